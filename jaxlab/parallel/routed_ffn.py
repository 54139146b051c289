"""Routed-expert FFN on one device: the reference every EP strategy must match.

``y[t] = sum_j combine_weights[t, j] * FFN_{expert_ids[t, j]}(x[t])`` with
``FFN_e(v) = act(v @ w_gate[e] + b_gate[e], v @ w_up[e] + b_up[e]) @ w_down[e] + b_down[e]``.
``act`` is plain SwiGLU ``silu(g) * u`` or gpt-oss's clamped SwiGLU, and each
bias is optional (absent = zero).  Token copies are sorted by expert so each
expert's rows are contiguous, run through three grouped matmuls, and scattered
back.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

import pallas_kernels

ACTIVATIONS = ("swiglu", "clamped_swiglu")


def clamped_swiglu(gate: jax.Array, up: jax.Array, alpha: float, limit: float) -> jax.Array:
    """gpt-oss activation: ``(clip(up, ±limit) + 1) * g * sigmoid(alpha * g)`` with ``g = min(gate, limit)``."""
    gate = jnp.minimum(gate, limit)
    up = jnp.clip(up, -limit, limit)
    return (up + 1.0) * gate * jax.nn.sigmoid(alpha * gate)


@dataclasses.dataclass(frozen=True)
class ExpertActivation:
    """Gated activation of the experts; static (hashable), so changing it recompiles.

    kind: ``"swiglu"`` (``silu(g) * u``) or ``"clamped_swiglu"`` (gpt-oss, which
    uses ``alpha`` and ``limit``; see ``clamped_swiglu``).
    """

    kind: str = "swiglu"
    alpha: float = 1.702
    limit: float = 7.0

    def __post_init__(self):
        if self.kind not in ACTIVATIONS:
            raise ValueError(f"ExpertActivation.kind must be one of {ACTIVATIONS}, got {self.kind!r}")
        if self.kind == "clamped_swiglu" and self.limit <= 0:
            raise ValueError(f"ExpertActivation.limit must be > 0, got {self.limit}")

    def __call__(self, gate: jax.Array, up: jax.Array) -> jax.Array:
        if self.kind == "clamped_swiglu":
            return clamped_swiglu(gate, up, self.alpha, self.limit)
        return jax.nn.silu(gate) * up


class ExpertBiases(NamedTuple):
    """Optional per-expert biases ``gate/up [E, f]``, ``down [E, d]``; ``None`` means no bias.

    A pytree whose ``None`` entries have no leaves, so it passes through
    ``shard_map`` and ``jax.grad`` with only the biases that exist.
    """

    gate: jax.Array | None = None
    up: jax.Array | None = None
    down: jax.Array | None = None


def check_routing_args(
    x: jax.Array,
    expert_ids: jax.Array,
    combine_weights: jax.Array,
    w_gate: jax.Array,
    w_up: jax.Array,
    w_down: jax.Array,
    biases: ExpertBiases = ExpertBiases(),
) -> None:
    """Raise a ValueError naming the first argument whose shape or dtype does not fit."""
    if x.ndim != 2:
        raise ValueError(f"x must be [tokens, d_model], got shape {x.shape}")
    tokens, d_model = x.shape
    if expert_ids.ndim != 2 or expert_ids.shape[0] != tokens:
        raise ValueError(f"expert_ids must be [{tokens}, top_k], got shape {expert_ids.shape}")
    if not jnp.issubdtype(expert_ids.dtype, jnp.integer):
        raise ValueError(f"expert_ids must be integer, got {expert_ids.dtype}")
    if combine_weights.shape != expert_ids.shape:
        raise ValueError(f"combine_weights must match expert_ids shape {expert_ids.shape}, got {combine_weights.shape}")
    if w_gate.ndim != 3 or w_gate.shape[1] != d_model:
        raise ValueError(f"w_gate must be [experts, {d_model}, d_ff], got shape {w_gate.shape}")
    if w_up.shape != w_gate.shape:
        raise ValueError(f"w_up must match w_gate shape {w_gate.shape}, got {w_up.shape}")
    num_experts, _, d_ff = w_gate.shape
    if w_down.shape != (num_experts, d_ff, d_model):
        raise ValueError(f"w_down must be [{num_experts}, {d_ff}, {d_model}], got shape {w_down.shape}")
    expected = {"b_gate": (num_experts, d_ff), "b_up": (num_experts, d_ff), "b_down": (num_experts, d_model)}
    for (name, shape), bias in zip(expected.items(), biases):
        if bias is not None and bias.shape != shape:
            raise ValueError(f"{name} must be [{shape[0]}, {shape[1]}] or None, got shape {bias.shape}")


def row_groups(group_sizes: jax.Array, rows: int) -> jax.Array:
    """Group index of each sorted row; rows past ``sum(group_sizes)`` get ``len(group_sizes)``.

    The expert-sorted layout only carries group sizes, so a row's bias is found
    through the group (weight slot) it falls in.
    """
    ends = jnp.cumsum(group_sizes)
    return jnp.searchsorted(ends, jnp.arange(rows), side="right").astype(jnp.int32)


def _add_bias(h: jax.Array, bias: jax.Array | None, groups: jax.Array) -> jax.Array:
    """``h[r] += bias[groups[r]]``; out-of-range groups (padding rows) add zero, keeping them zero."""
    if bias is None:
        return h
    return h + jnp.take(bias.astype(h.dtype), groups, axis=0, mode="fill", fill_value=0)


def expert_ffn(
    x_sorted: jax.Array,
    group_sizes: jax.Array,
    w_gate: jax.Array,
    w_up: jax.Array,
    w_down: jax.Array,
    *,
    biases: ExpertBiases = ExpertBiases(),
    activation: ExpertActivation = ExpertActivation(),
    gmm_impl: str = "auto",
    gmm_interpret: bool = False,
) -> jax.Array:
    """Gated FFN over expert-sorted rows; rows past ``sum(group_sizes)`` come out zero.

    Group ``g`` of the rows uses ``w_*[g]`` and ``biases.*[g]``.  ``gmm_interpret``
    runs a Pallas kernel in interpret mode (CPU tests of the accelerator paths).
    """
    groups = None if all(b is None for b in biases) else row_groups(group_sizes, x_sorted.shape[0])

    def gmm(lhs, rhs):
        return pallas_kernels.gmm(lhs, rhs, group_sizes, impl=gmm_impl, interpret=gmm_interpret)

    gate = _add_bias(gmm(x_sorted, w_gate), biases.gate, groups)
    up = _add_bias(gmm(x_sorted, w_up), biases.up, groups)
    hidden = activation(gate, up)
    y = gmm(hidden, w_down)
    return _add_bias(y, biases.down, groups)


def combine(y_entries: jax.Array, combine_weights: jax.Array) -> jax.Array:
    """Weighted sum over the top-k copies: [T, k, d] x [T, k] -> [T, d]."""
    weights = combine_weights.astype(y_entries.dtype)
    return jnp.einsum("tk,tkd->td", weights, y_entries)


def routed_ffn_reference(
    x: jax.Array,
    expert_ids: jax.Array,
    combine_weights: jax.Array,
    w_gate: jax.Array,
    w_up: jax.Array,
    w_down: jax.Array,
    *,
    biases: ExpertBiases = ExpertBiases(),
    activation: ExpertActivation = ExpertActivation(),
    gmm_impl: str = "auto",
    gmm_interpret: bool = False,
) -> jax.Array:
    """Single-device routed FFN: sort token copies by expert, grouped matmuls, unsort."""
    check_routing_args(x, expert_ids, combine_weights, w_gate, w_up, w_down, biases)
    tokens, top_k = expert_ids.shape
    num_experts = w_gate.shape[0]
    flat_ids = expert_ids.reshape(-1)
    order = jnp.argsort(flat_ids, stable=True)
    x_sorted = x[order // top_k]
    group_sizes = jnp.bincount(flat_ids, length=num_experts).astype(jnp.int32)
    y_sorted = expert_ffn(
        x_sorted,
        group_sizes,
        w_gate,
        w_up,
        w_down,
        biases=biases,
        activation=activation,
        gmm_impl=gmm_impl,
        gmm_interpret=gmm_interpret,
    )
    y_entries = y_sorted[jnp.argsort(order)].reshape(tokens, top_k, -1)
    return combine(y_entries, combine_weights)
