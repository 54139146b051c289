"""Plan-bounded receive buffers on the static ``all_to_all`` transport (runs on XLA:CPU).

Why: a single dense ``all_to_all`` has one static size per (source,
destination) pair, and under any plan one pair may carry all of a source's
copies, so without drops every device must receive ``D x local copies`` rows,
the worst case, whatever the planner guarantees.  LLEP's memory saving needs
the receive side sized by the plan instead: the device planner guarantees at
most ``device_planner.capacity()`` rows per device.

How: copies travel in rounds.  Round ``r`` sends rows ``[r*c, (r+1)*c)`` of
each (source, destination) pair as one ``all_to_all`` of ``[D, c]`` rows, and
the receiver writes them straight into a compact ``[recv_capacity, d]``
buffer at the offsets it knows from the all-gathered ``[D, D]`` count matrix
(sources in order).  The number of rounds, ``ceil(max pair / c)``, is the same
on every device; a ``scan`` over the static maximum runs each round under a
``cond`` so rounds past it cost nothing, and ordinary autodiff transposes the
whole thing (gather <-> scatter, ``all_to_all`` <-> ``all_to_all``).  Results
return along the same rounds reversed.

Memory per device: the compact buffer, one round's ``[D, c]`` send and receive
blocks, the local copies; nothing of size ``D x local copies``.  Bytes moved:
``rounds x D x c`` rows each way (the HLO shows one round's ``all_to_all``
inside the loop).  Rows that would not fit ``recv_capacity`` are trimmed by
their sender and come back with ``kept = False`` (counted, never silent).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxlab.parallel.dispatch import Routed, compute_received, fit_to_capacity, positions_by_destination

SCOPE = "ep_bounded_exchange"  # named scope of the per-round token collectives (found in the HLO)


def default_pair_rows(recv_capacity: int, num_devices: int) -> int:
    """Rows per pair per round: one round fills about one receive buffer."""
    return max(1, math.ceil(recv_capacity / num_devices))


def num_rounds(allowed: jax.Array, pair_rows: int) -> jax.Array:
    """Rounds of ``pair_rows`` rows per pair that carry every allowed row (the loop's trip count)."""
    return -(-jnp.max(allowed) // pair_rows)


def _round_index(r, offsets: jax.Array, allowed: jax.Array, pair_rows: int, out_of_range: int):
    """``[D, c]`` buffer positions of round ``r``'s rows per peer (``out_of_range`` where none)."""
    within = r * pair_rows + jnp.arange(pair_rows)[None, :]
    valid = within < allowed[:, None]
    return jnp.where(valid, offsets[:, None] + within, out_of_range), valid


def _all_to_all(v: jax.Array, axis_name: str) -> jax.Array:
    with jax.named_scope(SCOPE):
        return jax.lax.all_to_all(v, axis_name, 0, 0)


def exchange_bounded(
    x_entries: jax.Array,
    routed: Routed,
    num_devices: int,
    recv_capacity: int,
    num_slots: int,
    expert_fn,
    axis_name: str,
    pair_rows: int | None = None,
):
    """Send copies in ``[D, pair_rows]`` rounds into a ``[recv_capacity]`` buffer, compute, return.

    Same contract as ``dispatch.exchange_all_to_all``: returns (y_entries, kept, rows processed).
    """
    c = pair_rows or default_pair_rows(recv_capacity, num_devices)
    me = jax.lax.axis_index(axis_name)
    n, d_model = x_entries.shape
    order, pos, send_sizes = positions_by_destination(routed.dest, num_devices)
    matrix = jax.lax.all_gather(send_sizes, axis_name)  # [src, dst], the same on every device
    offsets_at_dst, allowed = fit_to_capacity(matrix, recv_capacity)
    send_allowed, recv_allowed = allowed[me], allowed[:, me]
    send_offsets = jnp.cumsum(send_sizes) - send_sizes  # each destination's rows in sorted order
    recv_offsets = offsets_at_dst[:, me]
    rounds = num_rounds(allowed, c)
    max_rounds = max(1, -(-n // c))
    sorted_x = x_entries[order]
    sorted_slot = routed.slot.astype(jnp.int32)[order]

    def send_round(carry, r):
        def go(carry):
            x_buf, s_buf = carry
            idx, valid = _round_index(r, send_offsets, send_allowed, c, n)
            x_blk = sorted_x.at[idx].get(mode="fill", fill_value=0)
            s_blk = jnp.where(valid, sorted_slot.at[idx].get(mode="fill", fill_value=-1), -1)
            x_blk, s_blk = _all_to_all(x_blk, axis_name), _all_to_all(s_blk, axis_name)
            at, _ = _round_index(r, recv_offsets, recv_allowed, c, recv_capacity)
            return x_buf.at[at].set(x_blk, mode="drop"), s_buf.at[at].set(s_blk, mode="drop")

        return jax.lax.cond(r < rounds, go, lambda carry: carry, carry), None

    x_buf = jnp.zeros_like(sorted_x, shape=(recv_capacity, d_model))
    s_buf = jnp.full_like(sorted_slot, -1, shape=(recv_capacity,))
    (x_buf, s_buf), _ = jax.lax.scan(send_round, (x_buf, s_buf), jnp.arange(max_rounds))
    y_buf, _, processed = compute_received(x_buf, s_buf, num_slots, expert_fn, recv_capacity)

    def return_round(y_sorted, r):
        def go(y_sorted):
            at, _ = _round_index(r, recv_offsets, recv_allowed, c, recv_capacity)
            y_blk = _all_to_all(y_buf.at[at].get(mode="fill", fill_value=0), axis_name)
            idx, _ = _round_index(r, send_offsets, send_allowed, c, n)
            return y_sorted.at[idx].set(y_blk, mode="drop")

        return jax.lax.cond(r < rounds, go, lambda y: y, y_sorted), None

    y_sorted = jnp.zeros_like(y_buf, shape=(n, y_buf.shape[1]))
    y_sorted, _ = jax.lax.scan(return_round, y_sorted, jnp.arange(max_rounds))
    inverse = jnp.argsort(order)
    # compute_received runs every row of the buffer (compute_rows = recv_capacity), so a copy
    # is processed exactly when it fit the buffer.
    kept = pos < send_allowed[routed.dest]
    return jnp.where(kept[:, None], y_sorted[inverse], 0), kept, processed
