"""Physically remove masked units: a smaller config and smaller parameters.

``compact(model, masks)`` returns a new ``DecoderLM`` whose logits equal the
masked model's (up to f32 summation order: the removed terms were exact zeros).
Widths stay per-layer tuples only when layers differ; a uniform result exports
with :func:`jaxlab.models.to_hf`, a non-uniform one stays loadable in jaxlab
(``to_hf`` refuses it with a message saying so).

Attention heads compact only in whole units that grouped-query attention can
express: every kept KV group must keep the same number of query heads.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.models.config import ModelConfig, dtype_of
from jaxlab.models.decoder import DecoderLM
from jaxlab.transforms.masks import Masks, apply_masks, check_masks, kv_keep, query_keep


class CompactionError(ValueError):
    """The masks describe a model the decoder cannot represent."""


def _width(values: list[int]) -> int | tuple[int, ...]:
    return values[0] if len(set(values)) == 1 else tuple(values)


def _head_plan(masks: Masks, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept query head indices, kept KV group indices) of ``layer``."""
    q = np.asarray(query_keep(masks, layer)) > 0
    kv = np.asarray(kv_keep(masks, layer)) > 0
    groups = q.shape[0] // kv.shape[0]
    per_group = q.reshape(kv.shape[0], groups).sum(axis=1)[kv]
    if len(per_group) == 0:
        raise CompactionError(
            f"masks.heads[{layer}]: every attention head is pruned; bypass the layer (masks.layers) instead"
        )
    if len(set(per_group.tolist())) != 1:
        raise CompactionError(
            f"masks.heads[{layer}]: kept KV groups keep {per_group.tolist()} query heads each; grouped-query "
            "attention needs the same count in every group (prune whole KV groups or equal heads per group)"
        )
    return np.flatnonzero(q), np.flatnonzero(kv)


def compact_config(cfg: ModelConfig, masks: Masks) -> ModelConfig:
    """The config of the model left after removing what ``masks`` prunes."""
    if getattr(cfg, "moe", None) is not None:
        raise CompactionError(
            f"family {cfg.family!r}: compaction covers dense decoders; MoE experts are not prunable units here"
        )
    check_masks(masks, cfg)
    layers = [i for i in range(cfg.num_layers) if float(masks.layers[i]) > 0]
    if not layers:
        raise CompactionError("masks.layers: every layer is bypassed; keep at least one")
    inter, heads, kvs = [], [], []
    for i in layers:
        f = int(np.sum(np.asarray(masks.mlp[i]) > 0))
        if f == 0:
            raise CompactionError(f"masks.mlp[{i}]: every neuron is pruned; bypass the layer (masks.layers) instead")
        q, kv = _head_plan(masks, i)
        inter.append(f)
        heads.append(len(q))
        kvs.append(len(kv))
    return cfg.replace(
        num_layers=len(layers), intermediate_size=_width(inter), num_heads=_width(heads), num_kv_heads=_width(kvs)
    )


def param_count(cfg: ModelConfig) -> int:
    """Number of parameters of a model with config ``cfg`` (computed, no arrays built)."""
    d, hd = cfg.hidden_size, cfg.head_dim
    total = cfg.vocab_size * d + d + (0 if cfg.tie_embeddings else d * cfg.vocab_size)
    for f, h, kv in zip(cfg.layer_intermediate, cfg.layer_heads, cfg.layer_kv_heads):
        attn = d * h * hd * 2 + d * kv * hd * 2
        if cfg.attention_bias:
            attn += h * hd + 2 * kv * hd
        if cfg.qk_norm:
            attn += 2 * hd
        total += attn + 3 * d * f + 2 * d
    return total


def _slice(
    path: tuple, arr: jax.Array, plan: dict[int, dict[str, np.ndarray]], new_index: dict[int, int], hd: int
) -> tuple[tuple, np.ndarray] | None:
    """(new path, sliced array) for one old parameter, or ``None`` if its layer is dropped."""
    if path[0] != "layers":
        return path, arr
    i = path[1]
    if i not in new_index:
        return None
    p = plan[i]
    new_path = ("layers", new_index[i]) + path[2:]
    module, proj, kind = path[2], path[3], path[-1]
    cols = None
    if module == "mlp" and proj in ("gate_proj", "up_proj", "down_proj"):
        cols = p["mlp"]
    elif module == "attn" and proj in ("q_proj", "o_proj"):
        cols = (p["q"][:, None] * hd + np.arange(hd)[None, :]).reshape(-1)
    elif module == "attn" and proj in ("k_proj", "v_proj"):
        cols = (p["kv"][:, None] * hd + np.arange(hd)[None, :]).reshape(-1)
    if cols is None:
        return new_path, arr
    rows_axis = proj in ("down_proj", "o_proj") and kind == "kernel"
    return new_path, (arr[cols] if rows_axis else arr[..., cols])


def compact_params(cfg: ModelConfig, params: nnx.State, masks: Masks) -> tuple[ModelConfig, dict[tuple, jax.Array]]:
    """``(new config, {param path: array})`` with masked units removed (not jit-able: shapes depend on masks).

    The slicing is a gather on the arrays where they live (device, possibly sharded over a mesh):
    no weight is copied to the host; only the masks are read there to plan the kept indices.

    Params are masked first, so a unit that masks zero in one tensor and not in
    another (e.g. a KV group whose query heads are all pruned) is treated consistently.
    """
    new_cfg = compact_config(cfg, masks)
    masked = apply_masks(params, masks, cfg.head_dim)
    kept_layers = [i for i in range(cfg.num_layers) if float(masks.layers[i]) > 0]
    new_index = {old: new for new, old in enumerate(kept_layers)}
    plan = {}
    for i in kept_layers:
        q, kv = _head_plan(masks, i)
        plan[i] = {"mlp": np.flatnonzero(np.asarray(masks.mlp[i]) > 0), "q": q, "kv": kv}
    out: dict[tuple, jax.Array] = {}
    for path, var in nnx.to_flat_state(masked):
        res = _slice(tuple(path), var[...], plan, new_index, cfg.head_dim)
        if res is not None:
            out[res[0]] = res[1]
    return new_cfg, out


def model_from_params(cfg: ModelConfig, arrays: dict[tuple, Any]) -> DecoderLM:
    """Build a ``DecoderLM`` for ``cfg`` from ``{param path: array}`` (no random init)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: DecoderLM(cfg, rngs=nnx.Rngs(0))))
    flat = dict(nnx.to_flat_state(state))
    missing = sorted(set(flat) - set(arrays), key=str)
    if missing:
        raise CompactionError(f"no array for parameter {'.'.join(map(str, missing[0]))}")
    pdt = dtype_of(cfg.param_dtype)
    for path, var in flat.items():
        arr = arrays[path]
        if tuple(arr.shape) != tuple(var.shape):
            raise CompactionError(f"{'.'.join(map(str, path))}: expected shape {var.shape}, got {arr.shape}")
        var.set_value(jnp.asarray(arr, pdt))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def compact(model: DecoderLM, masks: Masks) -> DecoderLM:
    """A new, smaller ``DecoderLM`` without the units ``masks`` prunes (``model`` is not modified)."""
    params = nnx.state(model, nnx.Param)
    new_cfg, arrays = compact_params(model.config, params, masks)
    return model_from_params(new_cfg, arrays)
