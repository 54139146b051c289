"""Plan invariants shared by the host and the on-device planner tests."""

import numpy as np


def check_plan(plan, counts: np.ndarray, max_extra: int, num_devices: int) -> None:
    """Every token in exactly one segment; copies distinct, non-native; slots point at them."""
    seg_end, seg_device, seg_slot, extra = (np.asarray(a) for a in plan.arrays())
    load = np.asarray(plan.device_load)
    num_experts = counts.shape[0]
    per_device = num_experts // num_devices
    np.testing.assert_array_equal(seg_end[:, -1], counts)
    assert np.all(np.diff(seg_end, axis=1) >= 0)
    assert load.sum() == counts.sum()
    assert extra.shape == (num_devices, max_extra)
    for device, row in enumerate(extra):
        held = row[row >= 0]
        assert len(set(held)) == len(held)
        assert np.all(held // per_device != device)
    seg_start = np.concatenate([np.zeros((num_experts, 1), int), seg_end[:, :-1]], axis=1)
    by_device = np.zeros(num_devices, np.int64)
    for e in range(num_experts):
        for s in np.flatnonzero(seg_end[e] > seg_start[e]):
            device, slot = seg_device[e, s], seg_slot[e, s]
            by_device[device] += seg_end[e, s] - seg_start[e, s]
            if device == e // per_device:
                assert slot == e % per_device
            else:
                assert extra[device, slot - per_device] == e
    np.testing.assert_array_equal(by_device, load)
