"""Routed-expert SwiGLU FFN on one device: the reference every EP strategy must match.

``y[t] = sum_j combine_weights[t, j] * FFN_{expert_ids[t, j]}(x[t])`` with
``FFN_e(v) = (silu(v @ w_gate[e]) * (v @ w_up[e])) @ w_down[e]``.  Token copies
are sorted by expert so each expert's rows are contiguous, run through three
grouped matmuls, and scattered back.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

import pallas_kernels


def check_routing_args(x: jax.Array, expert_ids: jax.Array, combine_weights: jax.Array,
                       w_gate: jax.Array, w_up: jax.Array, w_down: jax.Array) -> None:
    """Raise a ValueError naming the first argument whose shape or dtype does not fit."""
    if x.ndim != 2:
        raise ValueError(f"x must be [tokens, d_model], got shape {x.shape}")
    tokens, d_model = x.shape
    if expert_ids.ndim != 2 or expert_ids.shape[0] != tokens:
        raise ValueError(f"expert_ids must be [{tokens}, top_k], got shape {expert_ids.shape}")
    if not jnp.issubdtype(expert_ids.dtype, jnp.integer):
        raise ValueError(f"expert_ids must be integer, got {expert_ids.dtype}")
    if combine_weights.shape != expert_ids.shape:
        raise ValueError(
            f"combine_weights must match expert_ids shape {expert_ids.shape}, got {combine_weights.shape}")
    if w_gate.ndim != 3 or w_gate.shape[1] != d_model:
        raise ValueError(f"w_gate must be [experts, {d_model}, d_ff], got shape {w_gate.shape}")
    if w_up.shape != w_gate.shape:
        raise ValueError(f"w_up must match w_gate shape {w_gate.shape}, got {w_up.shape}")
    num_experts, _, d_ff = w_gate.shape
    if w_down.shape != (num_experts, d_ff, d_model):
        raise ValueError(
            f"w_down must be [{num_experts}, {d_ff}, {d_model}], got shape {w_down.shape}")


def expert_ffn(x_sorted: jax.Array, group_sizes: jax.Array, w_gate: jax.Array, w_up: jax.Array,
               w_down: jax.Array, *, gmm_impl: str = "auto") -> jax.Array:
    """SwiGLU over expert-sorted rows; rows past ``sum(group_sizes)`` come out zero."""
    gate = pallas_kernels.gmm(x_sorted, w_gate, group_sizes, impl=gmm_impl)
    up = pallas_kernels.gmm(x_sorted, w_up, group_sizes, impl=gmm_impl)
    hidden = jax.nn.silu(gate) * up
    return pallas_kernels.gmm(hidden, w_down, group_sizes, impl=gmm_impl)


def combine(y_entries: jax.Array, combine_weights: jax.Array) -> jax.Array:
    """Weighted sum over the top-k copies: [T, k, d] x [T, k] -> [T, d]."""
    weights = combine_weights.astype(y_entries.dtype)
    return jnp.einsum("tk,tkd->td", weights, y_entries)


def routed_ffn_reference(x: jax.Array, expert_ids: jax.Array, combine_weights: jax.Array,
                         w_gate: jax.Array, w_up: jax.Array, w_down: jax.Array, *,
                         gmm_impl: str = "auto") -> jax.Array:
    """Single-device routed FFN: sort token copies by expert, grouped matmuls, unsort."""
    check_routing_args(x, expert_ids, combine_weights, w_gate, w_up, w_down)
    tokens, top_k = expert_ids.shape
    num_experts = w_gate.shape[0]
    flat_ids = expert_ids.reshape(-1)
    order = jnp.argsort(flat_ids, stable=True)
    x_sorted = x[order // top_k]
    group_sizes = jnp.bincount(flat_ids, length=num_experts).astype(jnp.int32)
    y_sorted = expert_ffn(x_sorted, group_sizes, w_gate, w_up, w_down, gmm_impl=gmm_impl)
    y_entries = y_sorted[jnp.argsort(order)].reshape(tokens, top_k, -1)
    return combine(y_entries, combine_weights)
