"""Measured part of the benchmark: each simulated device's expert FFN work, run for real.

A device's work is one SwiGLU FFN per weight slot it uses, over the rows the
plan gives that slot.  It runs as one dense f32 matmul chain per group
(numpy/BLAS): XLA:CPU's ``ragged_dot`` and the jnp ``gmm`` reference both
multiply every row by every group's weights (``num_groups`` times the work),
which would charge LLEP for the extra groups its weight copies add rather than
for rows.  A TPU/GPU grouped matmul does per-group work, as this does.
"""
from __future__ import annotations

import time

import numpy as np

from jaxlab.parallel import ExpertPlan

from experiments.llep.cost_model import Shape


def device_group_sizes(plan: ExpertPlan, num_devices: int) -> list[np.ndarray]:
    """Rows per weight slot on every device, from the plan's segments."""
    num_experts = plan.seg_end.shape[0]
    per_device = num_experts // num_devices
    slots = per_device + plan.extra_experts.shape[1]
    sizes = np.zeros((num_devices, slots), np.int64)
    seg_len = np.diff(np.concatenate([np.zeros((num_experts, 1), np.int64), plan.seg_end], 1), axis=1)
    np.add.at(sizes, (plan.seg_device.ravel(), plan.seg_slot.ravel()), seg_len.ravel())
    return list(sizes)


class ExpertBench:
    """Random weights and inputs sized for one shape; times a device's grouped FFN."""

    def __init__(self, shape: Shape, max_rows: int, weight_bank: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        d, f = shape.d_model, shape.d_ff
        scale = 1.0 / np.sqrt(d)
        self.w_gate = [rng.standard_normal((d, f), np.float32) * scale for _ in range(weight_bank)]
        self.w_up = [rng.standard_normal((d, f), np.float32) * scale for _ in range(weight_bank)]
        self.w_down = [rng.standard_normal((f, d), np.float32) * scale for _ in range(weight_bank)]
        self.x = rng.standard_normal((max(max_rows, 1), d), np.float32)

    def run(self, group_sizes: np.ndarray) -> None:
        start = 0
        bank = len(self.w_gate)
        for g, rows in enumerate(group_sizes):
            if rows == 0:
                continue
            x = self.x[start:start + rows]
            gate = x @ self.w_gate[g % bank]
            hidden = gate / (1.0 + np.exp(-gate)) * (x @ self.w_up[g % bank])
            _ = hidden @ self.w_down[g % bank]
            start += rows

    def seconds(self, group_sizes: np.ndarray, repeats: int) -> float:
        """Best of ``repeats`` wall-clock runs (numpy has nothing to compile, so no warm-up)."""
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            self.run(group_sizes)
            best = min(best, time.perf_counter() - start)
        return float(best)


def calibrate_flops(bench: ExpertBench, shape: Shape, rows: int = 1024, repeats: int = 3) -> float:
    """Measured FLOP/s of this CPU on the expert FFN (used to scale the link model)."""
    seconds = bench.seconds(np.array([rows]), repeats)
    return rows * shape.flops_per_row / seconds
