"""The one config that describes every dense decoder LM jaxlab builds.

Widths may be given per layer (tuples) so that pruned models with
non-uniform layers stay loadable in jaxlab; `is_uniform` says whether the
model can be exported as a standard transformers checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import jax.numpy as jnp

Family = Literal["llama", "qwen2", "qwen3"]
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_ROPE_TYPES = ("default", "llama3", "linear")


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
class ModelConfig:
    """Architecture of a decoder-only LM (Llama / Qwen2 / Qwen3 families)."""

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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.family not in ("llama", "qwen2", "qwen3"):
            raise ValueError(f"family: expected 'llama', 'qwen2' or 'qwen3', got {self.family!r}")
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
                    "expected kv >= 1 dividing the query heads (grouped-query attention)")
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
    def is_uniform(self) -> bool:
        """True when every layer has the same widths (transformers can load it)."""
        return all(len(set(v)) == 1 for v in (self.layer_intermediate, self.layer_heads, self.layer_kv_heads))

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def tiny_config(family: Family = "llama", **overrides: Any) -> ModelConfig:
    """A small random-init config of each family, for fast tests."""
    base: dict[str, Any] = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
        num_heads=4, num_kv_heads=2, head_dim=16, family=family, rope_theta=10000.0,
        rms_norm_eps=1e-6, max_position_embeddings=256,
    )
    if family == "qwen2":
        base.update(attention_bias=True)
    if family == "qwen3":
        base.update(qk_norm=True)
    base.update(overrides)
    return ModelConfig(**base)
