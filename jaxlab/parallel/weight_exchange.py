"""LLEP weight copies that move only the experts the plan copies (runs inside ``shard_map``).

The plan's ``extra_experts [D, max_extra]`` (replicated on every device of the
expert axis) says which expert each device's copy slots hold.  The distinct
copied experts are broadcast one at a time: round ``i`` is one ``psum`` of one
expert's weights (and biases), to which only the owner contributes, and each
device keeps it in the slots that asked for it.  The rounds run in a
``while_loop`` whose trip count is the number of distinct copied experts in
this step's plan, so the bytes moved are ``copied experts x expert bytes`` (an
all-reduce; about twice that on a ring) whatever ``max_extra`` and ``D`` are,
and zero when the plan copies nothing (e.g. the lambda fallback).  The
replaced design, one dense ``psum_scatter`` per copy slot, moved
``(D - 1) x max_extra x expert bytes`` per device every step.

The gradient goes back the same way (``custom_vjp``): for each copied expert,
every device sums the cotangents of its slots holding it, one ``psum`` adds
them up and the owner adds the total into its own expert's gradient.  A
``while_loop`` with a traced trip count cannot be reverse-differentiated by
autodiff, hence the hand-written backward.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels.vma import reduce_to_vma_of, varying_axes

SCOPE = "llep_weight_exchange"  # named scope of the exchange's collectives (found in the HLO metadata)


def copied_experts(extra_experts: jax.Array, num_experts: int) -> tuple[jax.Array, jax.Array]:
    """Distinct experts that have a copy anywhere (ascending, padded with -1) and their count."""
    flat = extra_experts.reshape(-1)
    present = jnp.zeros((num_experts,), bool).at[jnp.where(flat >= 0, flat, num_experts)].set(True, mode="drop")
    ids = jnp.nonzero(present, size=min(num_experts, max(flat.shape[0], 1)), fill_value=-1)[0]
    return ids.astype(jnp.int32), jnp.sum(present).astype(jnp.int32)


def _vary_like(x: jax.Array, *refs: jax.Array) -> jax.Array:
    """Type ``x`` as varying wherever ``refs`` do (a loop carry must keep one type).

    The plan varies over the data axes when each data replica plans its own tokens.
    """
    missing = tuple(sorted(varying_axes(*refs) - varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x


def _slot_mask(hit: jax.Array, ndim: int) -> jax.Array:
    return hit.reshape(hit.shape + (1,) * (ndim - 1))


def _broadcast(
    weights: tuple[jax.Array, ...], extra: jax.Array, axis_name: str, num_experts: int
) -> tuple[jax.Array, ...]:
    me = jax.lax.axis_index(axis_name)
    per_device = weights[0].shape[0]
    max_extra = extra.shape[1]
    ids, count = copied_experts(extra, num_experts)
    my_slots = extra[me]
    # zeros_like keeps the per-device (varying) type shard_map expects for the carry.
    bufs = tuple(_vary_like(jnp.zeros_like(w, shape=(max_extra,) + w.shape[1:]), w, extra) for w in weights)
    if max_extra == 0:
        return bufs

    def round_(i, bufs):
        e = ids[i]
        mine = e // per_device == me
        rows = tuple(jnp.where(mine, w[e % per_device], jnp.zeros((), w.dtype)) for w in weights)
        with jax.named_scope(SCOPE):
            got = jax.lax.psum(rows, axis_name)
        hit = my_slots == e
        return tuple(jnp.where(_slot_mask(hit, b.ndim), g[None], b) for g, b in zip(got, bufs))

    return jax.lax.fori_loop(0, count, round_, bufs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def exchange_weight_copies(
    weights: tuple[jax.Array, ...], extra_experts: jax.Array, axis_name: str, num_experts: int
) -> tuple[jax.Array, ...]:
    """This device's copy-slot weights ``[max_extra, ...]`` for each local ``[E/D, ...]`` tensor.

    ``weights`` is a tuple of per-expert tensors (weights and biases, same
    leading expert axis); slots set to -1 come back as zeros.
    """
    return _broadcast(weights, extra_experts, axis_name, num_experts)


def _fwd(weights, extra, axis_name, num_experts):
    return _broadcast(weights, extra, axis_name, num_experts), (weights, extra)


def _bwd(axis_name, num_experts, res, cts):
    weights, extra = res
    me = jax.lax.axis_index(axis_name)
    per_device = weights[0].shape[0]
    ids, count = copied_experts(extra, num_experts)
    my_slots = extra[me]
    grads = tuple(jnp.zeros_like(w) for w in weights)
    if extra.shape[1] == 0:
        return grads, None
    grads = tuple(_vary_like(g, g, extra, *cts) for g in grads)

    def round_(i, grads):
        e = ids[i]
        hit = my_slots == e
        part = tuple(jnp.sum(jnp.where(_slot_mask(hit, ct.ndim), ct, jnp.zeros((), ct.dtype)), axis=0) for ct in cts)
        with jax.named_scope(SCOPE):
            total = jax.lax.psum(part, axis_name)
        mine = e // per_device == me
        return tuple(g.at[e % per_device].add(jnp.where(mine, t, jnp.zeros((), t.dtype))) for g, t in zip(grads, total))

    grads = jax.lax.fori_loop(0, count, round_, grads)
    # Weights replicated over data replicas: each replica's copy gradients add up.
    return tuple(reduce_to_vma_of(g, w) for g, w in zip(grads, weights)), None


exchange_weight_copies.defvjp(_fwd, _bwd)
