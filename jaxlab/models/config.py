"""The one config that describes every decoder LM jaxlab builds (dense and MoE).

Widths may be given per layer (tuples) so that pruned models with
non-uniform layers stay loadable in jaxlab; `is_uniform` says whether the
model can be exported as a standard transformers checkpoint. A ``moe``
section turns the feed-forward of (some) layers into a routed mixture of experts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import jax.numpy as jnp

Family = Literal["llama", "qwen2", "qwen3", "mistral", "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss"]
FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss")
MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_ROPE_TYPES = ("default", "llama3", "linear", "yarn")
_LAYER_TYPES = ("full_attention", "sliding_attention")
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable", "everything_saveable")
ATTENTION_IMPLS = ("xla", "dot_product", "splash", "cudnn")


def dtype_of(name: str) -> Any:
    """Map a config dtype string to a jnp dtype, with a clear error."""
    if name not in _DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def _per_layer(value: int | tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name}: expected {n} per-layer values (num_layers), got {len(value)}")
    return value


@dataclass(frozen=True)
class MoEConfig:
    """Routed experts of the MoE layers.

    Routing is softmax over ``num_experts`` router logits, then top-k; with
    ``norm_topk_prob`` the k weights are renormalised to sum to one (Mixtral,
    gpt-oss) and otherwise used as is (Qwen defaults). ``activation``:
    ``swiglu`` is ``silu(g) * u``; ``clamped_swiglu`` is gpt-oss's
    ``(clip(u) + 1) * g' * sigmoid(alpha * g')`` with ``g' = min(g, limit)``.
    ``ep`` picks how expert compute is distributed (``jaxlab.parallel``).
    """

    num_experts: int
    num_experts_per_tok: int
    intermediate_size: int
    norm_topk_prob: bool = True
    router_bias: bool = False
    expert_bias: bool = False
    activation: Literal["swiglu", "clamped_swiglu"] = "swiglu"
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    dense_layers: tuple[int, ...] = ()
    router_aux_loss_coef: float = 0.0
    router_z_loss_coef: float = 0.0
    ep: Literal["none", "standard", "llep"] = "none"
    ep_capacity_factor: float | None = None
    ep_max_extra_experts: int = 2
    ep_min_chunk: int = 16
    ep_planner: Literal["device", "host"] = "device"
    """LLEP planner: jitted on the device (default) or ``planner.plan_llep`` on the host (one replica only)."""
    ep_alpha: float = 1.0
    """LLEP capacity factor alpha: per-device target ``ceil(alpha * N / D)``."""
    ep_fallback_lambda: float = 1.0
    """LLEP lambda: run as plain EP when the max/mean device load is below it (1.0: never)."""
    gmm_impl: Literal["auto", "pallas_tpu", "triton", "ragged_dot", "reference"] = "auto"
    """Grouped-matmul path of the experts (``pallas_kernels.gmm``)."""

    def __post_init__(self) -> None:
        if self.num_experts < 1:
            raise ValueError(f"moe.num_experts: expected a positive integer, got {self.num_experts}")
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"moe.num_experts_per_tok: expected 1..{self.num_experts} (num_experts), got {self.num_experts_per_tok}"
            )
        if self.intermediate_size < 1:
            raise ValueError(f"moe.intermediate_size: expected a positive integer, got {self.intermediate_size}")
        if self.shared_expert_intermediate_size < 0:
            raise ValueError(
                "moe.shared_expert_intermediate_size: expected >= 0 (0 = no shared expert), "
                f"got {self.shared_expert_intermediate_size}"
            )
        if self.shared_expert_gate and not self.shared_expert_intermediate_size:
            raise ValueError("moe.shared_expert_gate: needs a shared expert (shared_expert_intermediate_size > 0)")
        if self.activation not in ("swiglu", "clamped_swiglu"):
            raise ValueError(f"moe.activation: expected 'swiglu' or 'clamped_swiglu', got {self.activation!r}")
        if self.ep not in ("none", "standard", "llep"):
            raise ValueError(f"moe.ep: expected 'none', 'standard' or 'llep', got {self.ep!r}")
        if self.ep_planner not in ("device", "host"):
            raise ValueError(f"moe.ep_planner: expected 'device' or 'host', got {self.ep_planner!r}")
        if self.ep_alpha < 1.0 or self.ep_fallback_lambda < 1.0:
            raise ValueError(
                f"moe.ep_alpha / moe.ep_fallback_lambda: expected >= 1, got {self.ep_alpha}, {self.ep_fallback_lambda}"
            )
        if self.gmm_impl not in ("auto", "pallas_tpu", "triton", "ragged_dot", "reference"):
            raise ValueError(
                f"moe.gmm_impl: expected one of auto, pallas_tpu, triton, ragged_dot, reference, got {self.gmm_impl!r}"
            )
        if self.router_aux_loss_coef < 0 or self.router_z_loss_coef < 0:
            raise ValueError("moe.router_aux_loss_coef / moe.router_z_loss_coef: expected >= 0")
        object.__setattr__(self, "dense_layers", tuple(sorted(set(self.dense_layers))))

    def replace(self, **changes: Any) -> "MoEConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only LM (dense Llama / Qwen2 / Qwen3 / Mistral, MoE Mixtral / Qwen-MoE / gpt-oss).

    ``layer_types`` (per layer ``full_attention`` / ``sliding_attention``) with
    ``sliding_window`` gives local attention; ``attention_sinks`` adds a learned
    per-head logit to every softmax (gpt-oss); ``attention_out_bias`` a bias on
    o_proj. ``moe`` (None: dense) makes every layer not in ``moe.dense_layers``
    an MoE layer; dense layers keep ``intermediate_size``.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int | tuple[int, ...]
    num_layers: int
    num_heads: int | tuple[int, ...]
    num_kv_heads: int | tuple[int, ...]
    head_dim: int | None = None
    family: Family = "llama"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 2048
    dtype: str = "float32"
    param_dtype: str = "float32"
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None
    attention_sinks: bool = False
    attention_out_bias: bool = False
    moe: MoEConfig | None = None
    remat: str = "none"
    """Rematerialise decoder blocks in the backward pass: ``none``, ``full`` or a ``jax.checkpoint_policies``
    name (``dots_saveable``, ...); trades compute for activation memory, same numbers."""
    attention: str = "xla"
    """Attention kernel: ``xla`` (reference einsum + softmax), ``dot_product`` (``jax.nn.dot_product_attention``),
    ``cudnn`` (cuDNN flash attention, GPU, bf16/fp16) or ``splash`` (Pallas TPU splash attention; interpreted
    on CPU). See ``jaxlab.models.attention`` for what each supports and what decode falls back to."""
    scan_layers: bool = False
    """Run the (identical) decoder blocks under one ``jax.lax.scan`` (one traced block body; same losses and
    gradients). Parameters stay per layer and are stacked inside the step, so compile time still grows with
    depth, more slowly than unrolled past ~16 layers (experiments/bench/bench_scan_compile.py). Needs uniform
    widths, one attention window and no dense/MoE mix."""

    def __post_init__(self) -> None:
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat: expected one of {list(REMAT_POLICIES)}, got {self.remat!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention: expected one of {list(ATTENTION_IMPLS)}, got {self.attention!r}")
        for name in ("vocab_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.family not in FAMILIES:
            raise ValueError(f"family: expected one of {FAMILIES}, got {self.family!r}")
        if self.family in MOE_FAMILIES and self.moe is None:
            raise ValueError(f"moe: family {self.family!r} is a mixture of experts and needs a moe section")
        if isinstance(self.moe, dict):
            object.__setattr__(self, "moe", MoEConfig(**self.moe))
        if self.moe is not None and any(not 0 <= i < self.num_layers for i in self.moe.dense_layers):
            raise ValueError(
                f"moe.dense_layers: expected layer indices in [0, {self.num_layers}), got {self.moe.dense_layers}"
            )
        if self.layer_types is not None:
            types = tuple(self.layer_types)
            if len(types) != self.num_layers or any(t not in _LAYER_TYPES for t in types):
                raise ValueError(f"layer_types: expected {self.num_layers} entries from {_LAYER_TYPES}, got {types}")
            object.__setattr__(self, "layer_types", types)
            if "sliding_attention" in types and not (self.sliding_window and self.sliding_window > 0):
                raise ValueError(
                    f"sliding_window: sliding_attention layers need a positive window, got {self.sliding_window}"
                )
        if self.head_dim is None:
            heads = self.num_heads if isinstance(self.num_heads, int) else max(self.num_heads)
            if self.hidden_size % heads:
                raise ValueError("head_dim: must be set when hidden_size is not divisible by num_heads")
            object.__setattr__(self, "head_dim", self.hidden_size // heads)
        for name in ("intermediate_size", "num_heads", "num_kv_heads"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, _per_layer(value, self.num_layers, name))
        for i, (h, kv) in enumerate(zip(self.layer_heads, self.layer_kv_heads)):
            if kv < 1 or h < 1 or h % kv:
                raise ValueError(
                    f"num_heads/num_kv_heads: layer {i} has {h} query heads and {kv} kv heads; "
                    "expected kv >= 1 dividing the query heads (grouped-query attention)"
                )
        if any(f < 1 for f in self.layer_intermediate):
            raise ValueError("intermediate_size: every layer needs at least one neuron")
        rope_type = (self.rope_scaling or {}).get("rope_type", "default")
        if rope_type not in _ROPE_TYPES:
            raise ValueError(f"rope_scaling.rope_type: {rope_type!r} is not supported; expected one of {_ROPE_TYPES}")
        dtype_of(self.dtype)
        dtype_of(self.param_dtype)

    @property
    def layer_intermediate(self) -> tuple[int, ...]:
        return _per_layer(self.intermediate_size, self.num_layers, "intermediate_size")

    @property
    def layer_heads(self) -> tuple[int, ...]:
        return _per_layer(self.num_heads, self.num_layers, "num_heads")

    @property
    def layer_kv_heads(self) -> tuple[int, ...]:
        return _per_layer(self.num_kv_heads, self.num_layers, "num_kv_heads")

    @property
    def layer_is_moe(self) -> tuple[bool, ...]:
        """Per layer: True where the feed-forward is the routed MoE block."""
        dense = set(self.moe.dense_layers) if self.moe else set(range(self.num_layers))
        return tuple(i not in dense for i in range(self.num_layers))

    @property
    def layer_window(self) -> tuple[int | None, ...]:
        """Per layer: the sliding attention window, or None for full causal attention."""
        if self.layer_types is None:
            return (self.sliding_window,) * self.num_layers
        return tuple(self.sliding_window if t == "sliding_attention" else None for t in self.layer_types)

    @property
    def is_uniform(self) -> bool:
        """True when every layer has the same widths (transformers can load it)."""
        return all(len(set(v)) == 1 for v in (self.layer_intermediate, self.layer_heads, self.layer_kv_heads))

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def tiny_config(family: Family = "llama", **overrides: Any) -> ModelConfig:
    """A small random-init config of each family, for fast tests."""
    base: dict[str, Any] = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        family=family,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
    )
    if family == "qwen2":
        base.update(attention_bias=True)
    if family in ("qwen3", "qwen3_moe"):
        base.update(qk_norm=True)
    if family == "mistral":  # Llama with a sliding window on every layer
        base.update(sliding_window=8)
    if family in MOE_FAMILIES:
        moe = dict(num_experts=8, num_experts_per_tok=2, intermediate_size=32, norm_topk_prob=True)
        if family == "qwen2_moe":
            base.update(attention_bias=True)
            moe.update(norm_topk_prob=False, shared_expert_intermediate_size=48, shared_expert_gate=True)
        if family == "qwen3_moe":
            moe.update(norm_topk_prob=False)
        if family == "gpt_oss":
            base.update(
                attention_bias=True,
                attention_out_bias=True,
                attention_sinks=True,
                sliding_window=4,
                layer_types=("sliding_attention", "full_attention"),
            )
            moe.update(router_bias=True, expert_bias=True, activation="clamped_swiglu")
        moe_over = overrides.pop("moe", {})
        base["moe"] = moe_over if isinstance(moe_over, MoEConfig) else MoEConfig(**{**moe, **moe_over})
    base.update(overrides)
    return ModelConfig(**base)
