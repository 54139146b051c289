"""Row-proportional expert work: the FFN on exactly the rows a plan gives each weight slot.

Why: on the CPU the project's gmm (the jnp reference) multiplies every row of
the static buffer by every group's weights, so the compiled share charges
standard EP's worst-case buffer and LLEP's extra copy slots in full.  The
TPU/GPU kernels walk (group, row tile) work items and skip rows past the real
groups, so their FLOPs follow the rows actually present.  This times that work
on this CPU: one jitted dense f32 SwiGLU FFN per non-empty slot over its rows
rounded up to a 128-row tile, nothing for empty slots.  It is the expert
FLOPs of an ideal grouped kernel, not the compiled layer, and the bench labels
it so.  (numpy/OpenBLAS was tried first: on the loaded 2-core machine its
timings were erratic, 560 rows in 8 groups taking 4x longer than 2,071 rows in one.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
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

    def __init__(self, d_model: int, d_ff: int, seed: int = 0, bank: int = 2, tile: int = 128):
        rng = np.random.default_rng(seed)
        s = 1.0 / np.sqrt(d_model)
        self.w = [
            tuple(
                jnp.asarray(rng.standard_normal(shape, np.float32) * s)
                for shape in ((d_model, d_ff), (d_model, d_ff), (d_ff, d_model))
            )
            for _ in range(bank)
        ]
        self.tile, self.d_model, self._x = tile, d_model, {}
        self._ffn = jax.jit(lambda x, wg, wu, wd: (jax.nn.silu(x @ wg) * (x @ wu)) @ wd)

    def _rows(self, rows: int) -> jax.Array:
        n = -(-rows // self.tile) * self.tile
        if n not in self._x:
            self._x[n] = jnp.ones((n, self.d_model), jnp.float32)
        return self._x[n]

    def run(self, group_sizes: np.ndarray) -> None:
        out = [
            self._ffn(self._rows(int(rows)), *self.w[g % len(self.w)]) for g, rows in enumerate(group_sizes) if rows > 0
        ]
        jax.block_until_ready(out)
