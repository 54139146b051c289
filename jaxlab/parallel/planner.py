"""Expert-to-device plans: standard EP (every expert on its owner) and LLEP.

A plan says, for every expert ``e``, which devices process which part of its
tokens.  Expert ``e``'s tokens are ranked globally (source device first, then
position on that device); segment ``s`` of expert ``e`` covers ranks
``[seg_end[e, s-1], seg_end[e, s])`` and runs on ``seg_device[e, s]`` in weight
slot ``seg_slot[e, s]``.  A device's slots ``[0, E/D)`` hold its native experts,
slots ``E/D + j`` hold the copy of ``extra_experts[device, j]`` (-1: unused).

The planner is plain numpy, run on the host: it is a short sequential greedy
over experts, cheap on a CPU and awkward as a jitted loop.  Inside a jitted step
it runs through ``jax.pure_callback`` (one host round trip per MoE layer), or
the caller computes the plan itself and passes the arrays in.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ExpertPlan:
    """Plan arrays (all int32): see the module docstring for their meaning."""

    seg_end: np.ndarray  # [E, D]
    seg_device: np.ndarray  # [E, D]
    seg_slot: np.ndarray  # [E, D]
    extra_experts: np.ndarray  # [D, max_extra]
    device_load: np.ndarray  # [D] token copies processed per device

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The four arrays the dispatch needs, in its argument order."""
        return self.seg_end, self.seg_device, self.seg_slot, self.extra_experts


def _check_counts(counts: np.ndarray, num_devices: int) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be a 1-D integer array, got {counts.dtype}{counts.shape}")
    if np.any(counts < 0):
        raise ValueError("counts must be non-negative")
    if num_devices < 1 or counts.shape[0] % num_devices:
        raise ValueError(f"num_devices={num_devices} must divide the number of experts {counts.shape[0]}")
    return counts.astype(np.int64)


def _to_plan(assign: list[dict[int, int]], extras: list[list[int]], num_devices: int, max_extra: int) -> ExpertPlan:
    num_experts = len(assign)
    per_device = num_experts // num_devices
    seg_end = np.zeros((num_experts, num_devices), np.int32)
    seg_device = np.zeros((num_experts, num_devices), np.int32)
    seg_slot = np.zeros((num_experts, num_devices), np.int32)
    load = np.zeros(num_devices, np.int64)
    for e, parts in enumerate(assign):
        owner = e // per_device
        seg_device[e] = owner
        seg_slot[e] = e % per_device
        end = 0
        for s, (device, tokens) in enumerate(parts.items()):
            end += tokens
            seg_end[e, s] = end
            seg_device[e, s] = device
            seg_slot[e, s] = e % per_device if device == owner else per_device + extras[device].index(e)
            load[device] += tokens
        seg_end[e, len(parts) :] = end  # padding segments are empty
    extra = np.full((num_devices, max_extra), -1, np.int32)
    for device, experts in enumerate(extras):
        extra[device, : len(experts)] = experts
    return ExpertPlan(seg_end, seg_device, seg_slot, extra, load.astype(np.int32))


def plan_standard(counts: np.ndarray, num_devices: int) -> ExpertPlan:
    """Standard EP: device ``e // (E/D)`` processes all of expert ``e``'s tokens."""
    counts = _check_counts(counts, num_devices)
    per_device = counts.shape[0] // num_devices
    assign = [{e // per_device: int(c)} if c else {} for e, c in enumerate(counts)]
    return _to_plan(assign, [[] for _ in range(num_devices)], num_devices, 0)


def _water_fill(loads: np.ndarray, amount: int) -> np.ndarray:
    """Integer split of ``amount`` over bins that minimises the maximum resulting load."""
    lo, hi = int(loads.min()), int(loads.min()) + amount
    while lo < hi:  # smallest level whose fill-up holds `amount`
        mid = (lo + hi) // 2
        if np.maximum(mid - loads, 0).sum() >= amount:
            hi = mid
        else:
            lo = mid + 1
    give = np.maximum(lo - 1 - loads, 0)
    short = amount - int(give.sum())
    for i in np.flatnonzero(loads <= lo - 1)[:short]:
        give[i] += 1
    return give


def plan_llep(counts: np.ndarray, num_devices: int, max_extra: int, min_chunk: int) -> ExpertPlan:
    """Least-loaded EP plan from global per-expert token counts.

    1. Balanced target ``ceil(total / D)``.  Each owner keeps its native experts'
       tokens up to the target, coldest experts first, so the tokens that spill
       belong to few (hot) experts and few weight copies are needed.
    2. Spilled tokens, hottest expert first, go in chunks to the least-loaded
       device below the target that already holds the expert or has a free
       copy slot (at most ``max_extra`` copies per device).  A chunk fills the
       device up to the target, except that a chunk needing a new weight copy
       has at least ``min_chunk`` tokens (so it may overshoot the target by
       less than ``min_chunk``), and less than ``min_chunk`` spilled tokens
       never get a new copy.
    3. What still does not fit (cap reached) is water-filled over the devices
       that already hold the expert, so nothing is dropped.
    """
    counts = _check_counts(counts, num_devices)
    if max_extra < 0:
        raise ValueError(f"max_extra must be >= 0, got {max_extra}")
    if min_chunk < 1:
        raise ValueError(f"min_chunk must be >= 1, got {min_chunk}")
    num_experts = counts.shape[0]
    per_device = num_experts // num_devices
    target = max(1, -(-int(counts.sum()) // num_devices))
    load = np.zeros(num_devices, np.int64)
    assign: list[dict[int, int]] = [{} for _ in range(num_experts)]
    extras: list[list[int]] = [[] for _ in range(num_devices)]
    excess = np.zeros(num_experts, np.int64)

    for e in np.argsort(counts, kind="stable"):
        owner = e // per_device
        keep = min(int(counts[e]), max(target - int(load[owner]), 0))
        if keep:
            assign[e][owner] = keep
            load[owner] += keep
        excess[e] = counts[e] - keep

    for e in np.argsort(-excess, kind="stable"):
        remaining = int(excess[e])
        if remaining == 0:
            break
        owner = e // per_device
        while remaining:
            room = target - load
            holds = np.array([d in assign[e] or d == owner for d in range(num_devices)])
            can_copy = np.array([len(x) < max_extra for x in extras]) & (remaining >= min_chunk)
            eligible = (room > 0) & (holds | can_copy)
            if not eligible.any():
                break
            device = int(np.flatnonzero(eligible)[np.argmin(load[eligible])])
            smallest = 1 if holds[device] else min_chunk
            chunk = min(remaining, max(int(room[device]), smallest))
            if not holds[device]:
                extras[device].append(int(e))
            assign[e][device] = assign[e].get(device, 0) + chunk
            load[device] += chunk
            remaining -= chunk
        if remaining:
            holders = sorted(set(assign[e]) | {owner})
            for device, extra in zip(holders, _water_fill(load[holders], remaining)):
                if extra:
                    assign[e][device] = assign[e].get(device, 0) + int(extra)
                    load[device] += extra
    return _to_plan(assign, extras, num_devices, max_extra)


def pair_counts(plan: ExpertPlan, counts_by_source: np.ndarray) -> np.ndarray:
    """Token copies sent from each source device to each destination: [D, D].

    ``counts_by_source[i, e]`` is how many of expert ``e``'s copies start on
    device ``i``; used to size all-to-all buffers and count bytes moved.
    """
    counts_by_source = np.asarray(counts_by_source, np.int64)
    num_devices = counts_by_source.shape[0]
    out = np.zeros((num_devices, num_devices), np.int64)
    rank_end = np.cumsum(counts_by_source, axis=0)
    rank_start = rank_end - counts_by_source
    seg_start = np.concatenate([np.zeros((plan.seg_end.shape[0], 1), np.int64), plan.seg_end[:, :-1]], axis=1)
    for e in range(counts_by_source.shape[1]):
        for s in range(plan.seg_end.shape[1]):
            lo, hi = seg_start[e, s], plan.seg_end[e, s]
            if hi <= lo:
                continue
            overlap = np.clip(np.minimum(rank_end[:, e], hi) - np.maximum(rank_start[:, e], lo), 0, None)
            out[:, plan.seg_device[e, s]] += overlap
    return out
