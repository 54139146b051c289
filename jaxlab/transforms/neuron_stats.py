"""Streaming per-neuron statistics for language-neuron detection (PLND and LAPE), one jitted pass per batch.

What is measured, per layer (``W_ffn = F`` FFN neurons, ``W_attn = H * head_dim``
attention dimensions in query/output space):

* ``ffn_importance [L, F]`` -- PLND's FFN score: sum over real tokens of
  ``|up_proj(x)|`` (the released detector scores up and down with this one number);
* ``act_count [L, F]`` -- LAPE: number of real tokens with ``SiLU(gate(x)) > 0``;
  with ``tokens`` it gives the activation probability;
* ``qk_score [L, W_attn]`` -- PLND's attention q/k score: for query head ``h`` and
  dimension ``d``, the softmax with that dimension's term ``q_d k_d / sqrt(D)``
  removed from every logit, minus the full softmax, squared, summed over the
  (real query, key) pairs;
* ``vo_score [L, W_attn]`` -- PLND's v/o score: sum over real tokens of
  ``|attention output|`` (before ``o_proj``);
* the same three PLND scores per sample (``sample_ffn [B, L, F]``, ``sample_qk``,
  ``sample_vo`` and ``sample_tokens [B]``), because PLND asks for the top-r of
  *every* sample, not of the sum.

Why it is built this way: the per-batch function is a pure jitted function of
``(graphdef, params, rest, batch)``; sums over tokens happen inside it, so host
memory is constant in the number of tokens (the per-sample rows go to the
tensorstore of :mod:`jaxlab.transforms.neuron_store`, not to RAM); batches may be
sharded over the data axis (``jaxlab.sharding.batch_sharding``) and XLA inserts
the reductions. Padding (``attention_mask == 0``) never counts: not as a token,
not as a query, not as a key. The q/k score loops over head dimensions with
``lax.map`` so its extra memory is one ``[B, H, S, S]`` softmax at a time.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.models.config import ModelConfig
from jaxlab.transforms.stats import as_split

_NEG = float(jnp.finfo(jnp.float32).min)
SUM_KEYS = ("ffn_importance", "act_count", "qk_score", "vo_score")
SAMPLE_KEYS = ("sample_ffn", "sample_qk", "sample_vo")


def check_model(cfg: ModelConfig) -> tuple[int, int]:
    """``(F, H * head_dim)`` of a dense model with equal widths in every layer; else a ``ValueError``.

    Language-neuron sets are stored as ``[L, F]`` arrays, so every layer must have
    the same width (a pruned model with ragged widths is not supported).
    """
    if cfg.moe is not None and any(cfg.layer_is_moe):
        raise ValueError("model.moe: language-neuron statistics need dense SwiGLU MLPs; this model has MoE layers")
    if cfg.attention_sinks:
        raise ValueError("model.attention_sinks: the PLND q/k score does not model attention sinks (gpt-oss)")
    if len(set(cfg.layer_intermediate)) != 1:
        raise ValueError(
            f"model.layer_intermediate: expected one FFN width for every layer, got "
            f"{sorted(set(cfg.layer_intermediate))}"
        )
    if len(set(cfg.layer_heads)) != 1 or len(set(cfg.layer_kv_heads)) != 1:
        raise ValueError("model.layer_heads: expected the same number of query/KV heads in every layer")
    return cfg.layer_intermediate[0], cfg.layer_heads[0] * cfg.head_dim


def _valid(batch: Mapping[str, jax.Array]) -> jax.Array:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    return jnp.ones(ids.shape, bool) if mask is None else mask.astype(bool)


def _qk_score(q: jax.Array, k: jax.Array, mask: jax.Array, weight: jax.Array) -> jax.Array:
    """Per sample and query-space dimension: sum over (query, key) of (softmax without d - softmax)^2 ``[B, H*D]``."""
    b, s, h, d = q.shape
    k = jnp.repeat(k, h // k.shape[2], axis=2)
    inv = 1.0 / math.sqrt(d)
    logits = jnp.einsum("bshd,bthd->bhst", q, k) * inv
    allowed = mask[:, None]
    full = jax.nn.softmax(jnp.where(allowed, logits, _NEG), axis=-1)

    def drop(dim):
        part = jnp.einsum("bsh,bth->bhst", q[..., dim], k[..., dim]) * inv
        p = jax.nn.softmax(jnp.where(allowed, logits - part, _NEG), axis=-1)
        return jnp.einsum("bs,bhst->bh", weight, jnp.square(p - full))

    per_dim = jax.lax.map(drop, jnp.arange(d))  # [D, B, H]
    return jnp.transpose(per_dim, (1, 2, 0)).reshape(b, h * d)


@functools.partial(jax.jit, static_argnums=0)
def batch_neuron_stats(
    graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, batch: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """One batch's statistics (see the module docstring); sums over the batch and per-sample rows.

    ``batch``: ``input_ids [B, S]``, optional ``attention_mask [B, S]`` (1 real, 0
    padding) and ``positions``. Returns ``SUM_KEYS`` as ``[L, W]`` float32 (``act_count``
    int32), ``SAMPLE_KEYS`` as ``[B, L, W]``, ``tokens`` and ``sample_tokens [B]``.
    """
    model = nnx.merge(graphdef, params, rest)
    valid = _valid(batch)
    w = valid.astype(jnp.float32)
    _, inter = model(batch["input_ids"], positions=batch.get("positions"), attention_mask=valid, collect=True)
    positions = batch.get("positions")
    if positions is None:
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    s = valid.shape[1]
    causal = jnp.tril(jnp.ones((s, s), bool))
    sample = {k: [] for k in SAMPLE_KEYS}
    counts = []
    for layer, acts in zip(model.layers, inter):
        up = jnp.abs(acts["up"].astype(jnp.float32))
        heads = jnp.abs(acts["heads"].astype(jnp.float32))
        sample["sample_ffn"].append(jnp.einsum("bs,bsf->bf", w, up))
        sample["sample_vo"].append(jnp.einsum("bs,bshd->bhd", w, heads).reshape(w.shape[0], -1))
        silu = jax.nn.silu(acts["gate"].astype(jnp.float32))
        counts.append(jnp.einsum("bs,bsf->f", valid.astype(jnp.int32), (silu > 0).astype(jnp.int32)))
        mask = causal[None] & valid[:, None, :]
        if layer.window is not None:
            mask = mask & ((jnp.arange(s)[:, None] - jnp.arange(s)[None, :]) < layer.window)[None]
        q, k, _ = layer.attn.project(layer.attn_norm(acts["block_in"]), positions)
        sample["sample_qk"].append(_qk_score(q.astype(jnp.float32), k.astype(jnp.float32), mask, w))
    out = {key: jnp.stack(rows, axis=1) for key, rows in sample.items()}
    out["ffn_importance"] = out["sample_ffn"].sum(0)
    out["qk_score"] = out["sample_qk"].sum(0)
    out["vo_score"] = out["sample_vo"].sum(0)
    out["act_count"] = jnp.stack(counts)
    out["sample_tokens"] = valid.sum(1).astype(jnp.int32)
    out["tokens"] = out["sample_tokens"].sum()
    return out


def iter_batch_stats(
    model_or_split: Any, batches: Iterable[Mapping[str, Any]], sharding: Any = None
) -> Iterator[dict[str, np.ndarray]]:
    """Host copies of :func:`batch_neuron_stats` for each batch; rows with no real token are dropped.

    ``sharding`` (e.g. ``jaxlab.sharding.batch_sharding(mesh)``) places every batch
    array before the call, splitting the batch over the data axis.
    """
    graphdef, params, rest = as_split(model_or_split)
    check_model(nnx.merge(graphdef, params, rest).config)
    for i, batch in enumerate(batches):
        if "input_ids" not in batch:
            raise ValueError(f"batches[{i}]: expected an 'input_ids' array, got keys {sorted(batch)}")
        arrays = {k: jnp.asarray(v) for k, v in batch.items() if k in ("input_ids", "attention_mask", "positions")}
        if sharding is not None:
            arrays = {k: jax.device_put(v, sharding) for k, v in arrays.items()}
        stats = jax.device_get(batch_neuron_stats(graphdef, params, rest, arrays))
        keep = stats["sample_tokens"] > 0
        for key in SAMPLE_KEYS + ("sample_tokens",):
            stats[key] = stats[key][keep]
        yield stats


def collect_neuron_stats(
    model_or_split: Any, batches: Iterable[Mapping[str, Any]], sharding: Any = None
) -> dict[str, np.ndarray]:
    """All statistics over ``batches`` in memory: sums ``[L, W]`` (float64 / int64) and per-sample rows.

    For large runs use :func:`jaxlab.transforms.neuron_store.collect_to_store`,
    which writes the per-sample rows to disk per batch and can resume.
    """
    total: dict[str, Any] = {}
    rows: dict[str, list] = {k: [] for k in SAMPLE_KEYS + ("sample_tokens",)}
    for stats in iter_batch_stats(model_or_split, batches, sharding):
        accumulate(total, stats)
        for key in rows:
            rows[key].append(stats[key])
    if not total or total["tokens"] == 0:
        raise ValueError("batches: expected at least one batch with real (attention_mask == 1) tokens, got none")
    return {**total, **{k: np.concatenate(v) for k, v in rows.items()}}


def accumulate(total: dict[str, Any], stats: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Add one batch's sums into ``total`` in place (float64 sums, int64 counts) and return it."""
    for key in SUM_KEYS + ("tokens",):
        value = np.asarray(stats[key], np.int64 if key in ("act_count", "tokens") else np.float64)
        total[key] = value.copy() if key not in total else total[key] + value
    return total


def sample_batches(
    samples: Iterable[Sequence[int]], batch_size: int, cutoff: int = 256, multiple: int = 16, pad_id: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """One sample (a sentence's token ids) per row, cut to ``cutoff`` tokens (PLND: 256), right-padded.

    Each batch is padded to its longest row rounded up to ``multiple`` (few distinct
    shapes, so few compilations); a short last batch is filled with all-padding rows,
    which the statistics drop. Empty samples are refused (a sample must have a token).
    """
    for name, value in (("batch_size", batch_size), ("cutoff", cutoff), ("multiple", multiple)):
        if value < 1:
            raise ValueError(f"{name}: expected >= 1, got {value}")
    rows: list[np.ndarray] = []

    def emit(rows):
        width = -(-max(len(r) for r in rows) // multiple) * multiple
        ids = np.full((batch_size, width), pad_id, np.int32)
        mask = np.zeros((batch_size, width), np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}

    for i, sample in enumerate(samples):
        row = np.asarray(sample, np.int32).reshape(-1)[:cutoff]
        if row.size == 0:
            raise ValueError(f"samples[{i}]: expected at least one token, got an empty sample")
        rows.append(row)
        if len(rows) == batch_size:
            yield emit(rows)
            rows = []
    if rows:
        yield emit(rows)


def activation_probability(act_count: np.ndarray, tokens: int | float) -> np.ndarray:
    """LAPE's activation probability ``act_count / tokens`` (``[L, F]``), checked."""
    if tokens <= 0:
        raise ValueError(f"tokens: expected > 0 real tokens for an activation probability, got {tokens}")
    return np.asarray(act_count, np.float64) / float(tokens)
