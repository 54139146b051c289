"""Calibration statistics that importance scores are built from, accumulated over a batch stream.

Each statistic is one jitted pure function of ``(graphdef, params, rest, batch)``
compiled once per shape and reused across pruning stages (masks live in the
params, never in the program). Batches are the trainer's ``input_ids`` /
``targets`` / ``loss_mask`` dicts; ``loss_mask`` marks the tokens that count.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.train.loss import masked_cross_entropy
from jaxlab.train.step import split_model

Split = tuple[nnx.GraphDef, nnx.State, nnx.State]


def as_split(model_or_split: Any) -> Split:
    """``(graphdef, params, rest)`` from a module or an existing split."""
    if isinstance(model_or_split, nnx.Module):
        return split_model(model_or_split)
    return model_or_split


def _forward(graphdef, params, rest, batch):
    model = nnx.merge(graphdef, params, rest)
    return model(batch["input_ids"], positions=batch.get("positions"), collect=True)


@functools.partial(jax.jit, static_argnums=0)
def _activation_sums(graphdef, params, rest, batch):
    """Per layer: sum |act|, sum act^2 ``[F]``; sum |head|, sum ||head||^2 ``[H]``; token count."""
    _, inter = _forward(graphdef, params, rest, batch)
    w = batch["loss_mask"].astype(jnp.float32)
    out = []
    for acts in inter:
        act, heads = acts["act"].astype(jnp.float32), acts["heads"].astype(jnp.float32)
        out.append(
            {
                "act_abs": jnp.einsum("bs,bsf->f", w, jnp.abs(act)),
                "act_sq": jnp.einsum("bs,bsf->f", w, act * act),
                "head_abs": jnp.einsum("bs,bshd->h", w, jnp.abs(heads)),
                "head_sq": jnp.einsum("bs,bshd->h", w, heads * heads),
            }
        )
    return out, jnp.sum(w)


def activation_stats(model_or_split: Any, batches: Iterable[Mapping[str, Any]]) -> tuple[list[dict], float]:
    """Token-summed activation magnitudes per layer over ``batches`` and the token count."""
    graphdef, params, rest = as_split(model_or_split)
    total, count = None, 0.0
    for batch in batches:
        sums, n = _activation_sums(graphdef, params, rest, _device(batch))
        sums = jax.device_get(sums)
        total = sums if total is None else jax.tree.map(np.add, total, sums)
        count += float(n)
    if total is None or count == 0:
        raise ValueError("calibration batches: expected at least one batch with loss_mask tokens, got none")
    return total, count


@functools.partial(jax.jit, static_argnums=0)
def _last_token(graphdef, params, rest, batch):
    """Signed gate / up / act values at each row's last counted token: per layer ``[B, F]``."""
    _, inter = _forward(graphdef, params, rest, batch)
    mask = batch["loss_mask"] > 0
    pos = jnp.max(jnp.where(mask, jnp.arange(mask.shape[1])[None, :], 0), axis=1)
    take = lambda x: jnp.take_along_axis(x, pos[:, None, None], axis=1)[:, 0]  # noqa: E731
    return [{k: take(acts[k].astype(jnp.float32)) for k in ("gate", "up", "act")} for acts in inter]


def last_token_values(model_or_split: Any, batches: Iterable[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Per layer ``{"gate", "up", "act"}: [N samples, F]``, one row per batch row (the seed's signal)."""
    graphdef, params, rest = as_split(model_or_split)
    rows: list[list[dict]] = []
    for batch in batches:
        rows.append(jax.device_get(_last_token(graphdef, params, rest, _device(batch))))
    if not rows:
        raise ValueError("last_token_values: expected at least one batch, got none")
    return [{k: np.concatenate([r[i][k] for r in rows]) for k in ("gate", "up", "act")} for i in range(len(rows[0]))]


def _loss_sum(params, graphdef, rest, batch):
    model = nnx.merge(graphdef, params, rest)
    logits = model(batch["input_ids"], positions=batch.get("positions"))
    return masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])


@functools.partial(jax.jit, static_argnums=0)
def _grad_sum(graphdef, params, rest, batch):
    (loss, n), grads = jax.value_and_grad(_loss_sum, has_aux=True)(params, graphdef, rest, batch)
    return grads, loss, n


def loss_gradient(model_or_split: Any, batches: Iterable[Mapping[str, Any]]) -> tuple[nnx.State, float]:
    """Gradient of the token-mean LM loss over all ``batches`` (a params-shaped state) and the mean loss."""
    graphdef, params, rest = as_split(model_or_split)
    total, loss_sum, count = None, 0.0, 0.0
    for batch in batches:
        g, loss, n = _grad_sum(graphdef, params, rest, _device(batch))
        total = g if total is None else jax.tree.map(jnp.add, total, g)
        loss_sum += float(loss)
        count += float(n)
    if total is None or count == 0:
        raise ValueError("calibration batches: expected at least one batch with loss_mask tokens, got none")
    return jax.tree.map(lambda x: x / count, total), loss_sum / count


@functools.partial(jax.jit, static_argnums=0)
def _block_cosines(graphdef, params, rest, batch):
    """Per layer: token-summed ``1 - cos(block_in, block_out)``, and the token count."""
    _, inter = _forward(graphdef, params, rest, batch)
    w = batch["loss_mask"].astype(jnp.float32)
    out = []
    for acts in inter:
        x, y = acts["block_in"].astype(jnp.float32), acts["block_out"].astype(jnp.float32)
        cos = jnp.sum(x * y, -1) / jnp.maximum(jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(y, axis=-1), 1e-12)
        out.append(jnp.sum(w * (1.0 - cos)))
    return jnp.stack(out), jnp.sum(w)


def block_influence_sums(model_or_split: Any, batches: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, float]:
    graphdef, params, rest = as_split(model_or_split)
    total, count = None, 0.0
    for batch in batches:
        s, n = _block_cosines(graphdef, params, rest, _device(batch))
        total = np.asarray(s) if total is None else total + np.asarray(s)
        count += float(n)
    if total is None or count == 0:
        raise ValueError("calibration batches: expected at least one batch with loss_mask tokens, got none")
    return total, count


def _device(batch: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in batch.items()}
