"""LLEP planner as jittable array code: runs inside the step, no host round trip.

Same plan format as ``planner.py`` (``seg_end / seg_device / seg_slot [E, D]``,
``extra_experts [D, max_extra]``), built without loops over experts:

1. Capacity ``target = ceil(alpha * N / D)``.  Each owner keeps its native
   experts' tokens up to ``target``, coldest first, so the excess belongs to
   few (hot) experts.
2. Sort the excess (largest first) and lay it end to end on a line; lay the
   devices' free capacity ``target - load`` (least loaded first) on the same
   line.  Where an expert's interval overlaps a device's, that device gets
   the overlap (water-filling the free capacity).
3. A piece smaller than ``min_chunk`` that is not the last of its expert is
   not worth a weight copy: the device boundary moves back to the expert's
   start, so the next device takes it.  A device therefore ends at most
   ``min_chunk - 1`` rows above ``target``: ``capacity()`` is a bound the
   plan guarantees, which sizes the static token buffers.
4. A device holds at most ``max_extra`` copies; a piece that would need one
   more goes back to its owner and is reported in ``over_capacity`` (the
   dispatch then counts the rows it cannot place, never silently).

``lambda_`` is the paper's fallback: when max/mean of the standard-EP device
loads is below it, the layer runs as plain EP (no copies).
"""

from __future__ import annotations

import fractions
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class DevicePlan(NamedTuple):
    """Plan arrays (int32) as in ``planner.ExpertPlan``, plus the rows above capacity."""

    seg_end: jax.Array  # [E, D]
    seg_device: jax.Array  # [E, D]
    seg_slot: jax.Array  # [E, D]
    extra_experts: jax.Array  # [D, max_extra]
    device_load: jax.Array  # [D]
    over_capacity: jax.Array  # [] rows on devices past capacity() (0 unless copies ran out)

    def arrays(self) -> tuple[jax.Array, ...]:
        """The four arrays the dispatch needs, in its argument order."""
        return self.seg_end, self.seg_device, self.seg_slot, self.extra_experts


def capacity(total: int, num_devices: int, min_chunk: int, alpha: float = 1.0, lambda_: float = 1.0) -> int:
    """Rows a device may have to process under a plan for ``total`` token copies.

    ``ceil(alpha * total / D) + min_chunk - 1`` from the planner's rule, or the
    plain-EP load the lambda fallback allows (``< lambda * total / D``).
    """
    num, den = _ratio(alpha)
    planned = max(-(-total * num // (den * num_devices)), 1) + min_chunk - 1
    fallback = math.ceil(lambda_ * total / num_devices) if lambda_ > 1.0 else 0
    return max(1, planned, fallback)


def _ratio(alpha: float) -> tuple[int, int]:
    """alpha as an exact fraction, so the traced target and ``capacity()`` agree to the row."""
    if alpha < 1.0:
        raise ValueError(f"alpha must be >= 1 (capacity below the balanced share), got {alpha}")
    frac = fractions.Fraction(alpha).limit_denominator(64)
    return frac.numerator, frac.denominator


def _target(total: jax.Array, num_devices: int, alpha: float) -> jax.Array:
    """``ceil(alpha * total / D)``, at least 1."""
    num, den = _ratio(alpha)
    return jnp.maximum(-(-total * num // (den * num_devices)), 1)


def _native_keep(counts: jax.Array, num_devices: int, target: jax.Array) -> jax.Array:
    """Tokens each expert keeps on its owner: coldest native experts first, up to ``target``."""
    by_owner = counts.reshape(num_devices, -1)
    order = jnp.argsort(by_owner, axis=1, stable=True)
    sorted_counts = jnp.take_along_axis(by_owner, order, axis=1)
    before = jnp.cumsum(sorted_counts, axis=1) - sorted_counts
    keep_sorted = jnp.clip(target - before, 0, sorted_counts)
    keep = jnp.zeros_like(by_owner).at[jnp.arange(num_devices)[:, None], order].set(keep_sorted)
    return keep.reshape(-1)


def _snap_boundaries(bounds: jax.Array, x_start: jax.Array, x_end: jax.Array, min_chunk: int) -> jax.Array:
    """Move a device boundary back to the start of the expert it cuts if that piece is < min_chunk."""
    j = jnp.searchsorted(x_end, bounds, side="right")
    j_safe = jnp.minimum(j, x_end.shape[0] - 1)
    start = x_start[j_safe]
    cuts = (j < x_end.shape[0]) & (start < bounds) & (bounds - start < min_chunk)
    return jnp.where(cuts, start, bounds)


def plan_llep_device(
    counts: jax.Array, num_devices: int, max_extra: int, min_chunk: int, alpha: float = 1.0, lambda_: float = 1.0
) -> DevicePlan:
    """Least-loaded plan from global per-expert counts ``[E]``; jittable, static shapes."""
    counts = jnp.asarray(counts, jnp.int32)
    num_experts = counts.shape[0]
    per_device = num_experts // num_devices
    owner = jnp.arange(num_experts, dtype=jnp.int32) // per_device
    total = jnp.sum(counts)
    target = _target(total, num_devices, alpha)
    std_load = jnp.sum(counts.reshape(num_devices, -1), axis=1)
    plain = jnp.max(std_load) * num_devices < lambda_ * jnp.maximum(total, 1)

    keep = jnp.where(plain, counts, _native_keep(counts, num_devices, target))
    excess = counts - keep
    load = jax.ops.segment_sum(keep, owner, num_segments=num_devices)
    free = jnp.maximum(target - load, 0)

    ex_order = jnp.argsort(-excess, stable=True)
    ex_sorted = excess[ex_order]
    x_end = jnp.cumsum(ex_sorted)
    x_start = x_end - ex_sorted
    dev_order = jnp.argsort(load, stable=True)
    bounds = _snap_boundaries(jnp.cumsum(free[dev_order]), x_start, x_end, min_chunk)
    b_start = jnp.concatenate([jnp.zeros((1,), bounds.dtype), bounds[:-1]])
    piece = jnp.clip(
        jnp.minimum(x_end[:, None], bounds[None, :]) - jnp.maximum(x_start[:, None], b_start[None, :]), 0, None
    )  # [E sorted, D sorted]

    rank = jnp.cumsum(piece > 0, axis=0) - 1  # copy slot index of each piece on its device
    copied = (piece > 0) & (rank < max_extra)
    back_to_owner = jnp.sum(jnp.where(copied, 0, piece), axis=1)
    pieces = (
        jnp.zeros((num_experts, num_devices), jnp.int32)
        .at[ex_order[:, None], dev_order[None, :]]
        .set(jnp.where(copied, piece, 0))
    )
    slots = (
        jnp.zeros((num_experts, num_devices), jnp.int32)
        .at[ex_order[:, None], dev_order[None, :]]
        .set(per_device + jnp.minimum(rank, max(max_extra - 1, 0)))
    )
    own = keep + jnp.zeros_like(keep).at[ex_order].set(back_to_owner)

    # Segments: the owner first, then the other devices in fill order.
    pos_owner = jnp.argsort(dev_order)[owner]  # owner's position in fill order
    s = jnp.arange(num_devices - 1)
    others = dev_order[s[None, :] + (s[None, :] >= pos_owner[:, None])]  # [E, D-1]
    seg_device = jnp.concatenate([owner[:, None], others], axis=1).astype(jnp.int32)
    sizes = jnp.concatenate([own[:, None], jnp.take_along_axis(pieces, others, axis=1)], axis=1)
    seg_slot = jnp.concatenate(
        [(jnp.arange(num_experts) % per_device)[:, None], jnp.take_along_axis(slots, others, axis=1)], axis=1
    ).astype(jnp.int32)
    seg_end = jnp.cumsum(sizes, axis=1).astype(jnp.int32)

    extra = jnp.full((num_devices, max_extra), -1, jnp.int32)
    if max_extra:
        dev_grid = jnp.broadcast_to(dev_order[None, :], piece.shape)
        exp_grid = jnp.broadcast_to(ex_order[:, None], piece.shape)
        extra = extra.at[jnp.where(copied, dev_grid, num_devices), jnp.where(copied, rank, 0)].set(
            exp_grid.astype(jnp.int32), mode="drop"
        )
    device_load = jax.ops.segment_sum(sizes.reshape(-1), seg_device.reshape(-1), num_segments=num_devices).astype(
        jnp.int32
    )
    cap = target + min_chunk - 1
    over = jnp.where(plain, 0, jnp.sum(jnp.maximum(device_load - cap, 0))).astype(jnp.int32)
    return DevicePlan(seg_end, seg_device, seg_slot, extra, device_load, over)
