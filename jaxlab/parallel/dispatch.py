"""Per-device pieces of expert parallelism; every function runs inside ``shard_map``.

The flow on each device (``N = local tokens * top_k`` token copies):

1. ``route_*``: each copy gets a destination device and a weight slot there.
2. ``exchange_*``: copies travel to their destination (``all_to_all`` with a
   static per-pair capacity, or ``ragged_all_to_all``), are processed by
   ``compute_received`` and travel back along the same path reversed.
3. The caller combines the returned copies with the router weights.

Everything is differentiable with ordinary autodiff: the transpose of each
collective sends gradients back along the forward route, so the gradient of a
weight copy lands on (and is summed into) its owner's weights.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Routed(NamedTuple):
    """Destination device and weight slot of each local token copy: [N] int32 each."""

    dest: jax.Array
    slot: jax.Array


def route_standard(flat_ids: jax.Array, experts_per_device: int) -> Routed:
    """Standard EP: a copy goes to the owner of its expert, native slot."""
    return Routed(flat_ids // experts_per_device, flat_ids % experts_per_device)


def route_planned(
    flat_ids: jax.Array,
    num_experts: int,
    seg_end: jax.Array,
    seg_device: jax.Array,
    seg_slot: jax.Array,
    axis_name: str,
) -> Routed:
    """LLEP: find each copy's global rank within its expert, then the plan segment holding it.

    Ranks are ordered by source device, then by position on that device, which
    is what ``planner.pair_counts`` assumes.
    """
    me = jax.lax.axis_index(axis_name)
    local_counts = jnp.bincount(flat_ids, length=num_experts)
    counts_by_source = jax.lax.all_gather(local_counts, axis_name)  # [D, E]
    before_me = jnp.sum(jnp.where(jnp.arange(counts_by_source.shape[0])[:, None] < me, counts_by_source, 0), axis=0)
    order = jnp.argsort(flat_ids, stable=True)
    sorted_ids = flat_ids[order]
    first = jnp.cumsum(local_counts) - local_counts
    rank_sorted = jnp.arange(flat_ids.shape[0]) - first[sorted_ids] + before_me[sorted_ids]
    rank = jnp.zeros_like(rank_sorted).at[order].set(rank_sorted)
    segment = jnp.sum(seg_end[flat_ids] <= rank[:, None], axis=1)
    return Routed(seg_device[flat_ids, segment], seg_slot[flat_ids, segment])


def compute_received(
    x_recv: jax.Array,
    slot_recv: jax.Array,
    num_slots: int,
    expert_fn: Callable[[jax.Array, jax.Array], jax.Array],
    compute_rows: int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sort received rows by weight slot (empty rows, slot -1, last), run experts, unsort.

    ``compute_rows`` bounds the rows the experts run on (LLEP: the plan's
    per-device capacity), so their activations are sized by the plan rather
    than by the worst-case receive buffer.  Real rows past it are not computed.
    Returns the outputs in received order, a per-row ``done`` mask (False for
    real rows past ``compute_rows``) and the number of rows computed.
    """
    rows = x_recv.shape[0]
    compute_rows = rows if compute_rows is None else min(compute_rows, rows)
    key = jnp.where(slot_recv < 0, num_slots, slot_recv)
    order = jnp.argsort(key, stable=True)
    group_sizes = jnp.bincount(key, length=num_slots + 1)[:num_slots].astype(jnp.int32)
    ends = jnp.minimum(jnp.cumsum(group_sizes), compute_rows)
    bounded = jnp.diff(ends, prepend=0).astype(jnp.int32)
    y_head = expert_fn(x_recv[order[:compute_rows]], bounded)
    y_sorted = jnp.zeros((rows, y_head.shape[1]), y_head.dtype).at[:compute_rows].set(y_head)
    inverse = jnp.argsort(order)
    done = (inverse < compute_rows) | (slot_recv < 0)
    return y_sorted[inverse], done, jnp.sum(bounded)


def positions_by_destination(dest: jax.Array, num_devices: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Stable order of copies by destination, each copy's index within its destination, per-dest counts."""
    order = jnp.argsort(dest, stable=True)
    counts = jnp.bincount(dest, length=num_devices)
    first = jnp.cumsum(counts) - counts
    pos_sorted = jnp.arange(dest.shape[0]) - first[dest[order]]
    return order, jnp.zeros_like(pos_sorted).at[order].set(pos_sorted), counts


def fit_to_capacity(matrix: jax.Array, recv_capacity: int) -> tuple[jax.Array, jax.Array]:
    """From ``[src, dst]`` counts: where each source's rows start on each destination, and the
    rows that fit ``recv_capacity`` (sources earlier in order fill first)."""
    offsets_at_dst = jnp.cumsum(matrix, axis=0) - matrix
    allowed = jnp.minimum(matrix, jnp.clip(recv_capacity - offsets_at_dst, 0, None))
    return offsets_at_dst, allowed


def exchange_all_to_all(
    x_entries: jax.Array,
    routed: Routed,
    num_devices: int,
    capacity: int,
    num_slots: int,
    expert_fn,
    axis_name: str,
    compute_rows: int | None = None,
):
    """Static-capacity transport (runs on XLA:CPU).  Returns (y_entries, kept mask, rows processed).

    Each (source, destination) pair has ``capacity`` rows; copies past it, or
    past the destination's ``compute_rows``, come back as zeros with ``kept = False``.
    """
    _, pos, _ = positions_by_destination(routed.dest, num_devices)
    kept = pos < capacity
    d_model = x_entries.shape[1]
    x_send = jnp.zeros((num_devices, capacity, d_model), x_entries.dtype)
    x_send = x_send.at[routed.dest, pos].set(x_entries, mode="drop")
    slot_send = jnp.full((num_devices, capacity), -1, jnp.int32)
    slot_send = slot_send.at[routed.dest, pos].set(routed.slot.astype(jnp.int32), mode="drop")
    x_recv = jax.lax.all_to_all(x_send, axis_name, 0, 0)
    slot_recv = jax.lax.all_to_all(slot_send, axis_name, 0, 0)
    y_recv, done, processed = compute_received(
        x_recv.reshape(-1, d_model), slot_recv.reshape(-1), num_slots, expert_fn, compute_rows
    )
    y_back = jax.lax.all_to_all(y_recv.reshape(num_devices, capacity, d_model), axis_name, 0, 0)
    done_back = jax.lax.all_to_all(done.reshape(num_devices, capacity).astype(jnp.int32), axis_name, 0, 0)
    at = (routed.dest, jnp.minimum(pos, capacity - 1))
    kept = kept & (done_back[at] > 0)
    return jnp.where(kept[:, None], y_back[at], 0), kept, processed


def exchange_ragged(
    x_entries: jax.Array,
    routed: Routed,
    num_devices: int,
    recv_capacity: int,
    num_slots: int,
    expert_fn,
    axis_name: str,
    compute_rows: int | None = None,
):
    """``ragged_all_to_all`` transport (TPU/GPU; XLA:CPU does not implement it).

    Copies are sent contiguously per destination; a device receives at most
    ``recv_capacity`` rows in total, filled in source order, and senders trim
    what would not fit (those copies come back as zeros with ``kept = False``).
    """
    me = jax.lax.axis_index(axis_name)
    order, pos, send_sizes = positions_by_destination(routed.dest, num_devices)
    matrix = jax.lax.all_gather(send_sizes, axis_name)  # [src, dst]
    offsets_at_dst, allowed = fit_to_capacity(matrix, recv_capacity)
    send_allowed = allowed[me]
    recv_allowed = allowed[:, me]
    input_offsets = jnp.cumsum(send_sizes) - send_sizes
    output_offsets = offsets_at_dst[me]
    recv_offsets = offsets_at_dst[:, me]
    sorted_x = x_entries[order]
    sorted_slot = routed.slot.astype(jnp.int32)[order]
    d_model = x_entries.shape[1]
    # Output buffers built with *_like so shard_map types them as per-device.
    x_recv = jax.lax.ragged_all_to_all(
        sorted_x,
        jnp.zeros_like(sorted_x, shape=(recv_capacity, d_model)),
        input_offsets,
        send_allowed,
        output_offsets,
        recv_allowed,
        axis_name=axis_name,
    )
    slot_recv = jax.lax.ragged_all_to_all(
        sorted_slot,
        jnp.full_like(sorted_slot, -1, shape=(recv_capacity,)),
        input_offsets,
        send_allowed,
        output_offsets,
        recv_allowed,
        axis_name=axis_name,
    )
    y_recv, done, processed = compute_received(x_recv, slot_recv, num_slots, expert_fn, compute_rows)
    sender_offsets = (jnp.cumsum(matrix, axis=1) - matrix)[:, me]  # my rows' start on each source
    y_sorted = jax.lax.ragged_all_to_all(
        y_recv, jnp.zeros_like(sorted_x), recv_offsets, recv_allowed, sender_offsets, send_allowed, axis_name=axis_name
    )
    done_sorted = jax.lax.ragged_all_to_all(
        done.astype(jnp.int32),
        jnp.zeros_like(sorted_slot),
        recv_offsets,
        recv_allowed,
        sender_offsets,
        send_allowed,
        axis_name=axis_name,
    )
    kept = (pos < send_allowed[routed.dest]) & (done_sorted[jnp.argsort(order)] > 0)
    y_entries = y_sorted[jnp.argsort(order)]
    return jnp.where(kept[:, None], y_entries, 0), kept, processed
