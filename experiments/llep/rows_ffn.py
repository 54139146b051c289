"""Row-proportional expert work: the FFN on exactly the rows a plan gives each weight slot.

Why: on the CPU the project's gmm (the jnp reference) multiplies every row of
the static buffer by every group's weights, so the compiled share charges
standard EP's worst-case buffer and LLEP's extra copy slots in full.  The
TPU/GPU kernels walk (group, row tile) work items and skip rows past the real
groups, so their FLOPs follow the rows actually present.  This times that work
on this CPU: one dense f32 SwiGLU FFN (numpy/BLAS) per non-empty slot over its
rows, nothing for empty slots or padding.  It is the expert FLOPs of an ideal
grouped kernel, not a compiled program, and the bench labels it so.
"""
from __future__ import annotations

import numpy as np

from jaxlab.parallel import ExpertPlan


def device_group_sizes(plan: ExpertPlan, num_devices: int) -> np.ndarray:
    """Rows per weight slot on every device ``[D, slots]``, from the plan's segments."""
    num_experts = plan.seg_end.shape[0]
    per_device = num_experts // num_devices
    sizes = np.zeros((num_devices, per_device + plan.extra_experts.shape[1]), np.int64)
    seg_len = np.diff(np.concatenate([np.zeros((num_experts, 1), np.int64), plan.seg_end], 1), axis=1)
    np.add.at(sizes, (plan.seg_device.ravel(), plan.seg_slot.ravel()), seg_len.ravel())
    return sizes


class RowsFFN:
    """Random weights for one layer width; runs one device's per-slot FFNs."""

    def __init__(self, d_model: int, d_ff: int, max_rows: int, seed: int = 0, bank: int = 2):
        rng = np.random.default_rng(seed)
        s = 1.0 / np.sqrt(d_model)
        self.w = [tuple(rng.standard_normal(shape, np.float32) * s
                        for shape in ((d_model, d_ff), (d_model, d_ff), (d_ff, d_model)))
                  for _ in range(bank)]
        self.x = rng.standard_normal((max(max_rows, 1), d_model), np.float32)

    def run(self, group_sizes: np.ndarray) -> None:
        start = 0
        for g, rows in enumerate(group_sizes):
            if rows == 0:
                continue
            wg, wu, wd = self.w[g % len(self.w)]
            x = self.x[start:start + rows]
            gate = x @ wg
            _ = (gate / (1.0 + np.exp(-gate)) * (x @ wu)) @ wd
            start += rows
