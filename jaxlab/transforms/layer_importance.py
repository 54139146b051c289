"""Whole-layer importance: Block Influence and the loss increase when a block is skipped.

``block_influence`` is ShortGPT's BI: ``1 - cos(block input, block output)``
averaged over calibration tokens; a block that barely rotates the residual
stream is cheap to drop. ``skip_loss`` measures the real thing directly:
the mean LM loss with the block bypassed (o_proj and down_proj zeroed) minus
the loss of the current model; it costs one pass over the batches per layer,
through one compiled program (the layer mask is a traced argument).
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.transforms import stats
from jaxlab.transforms.masks import Masks, apply_masks, full_masks

LAYER_CRITERIA = ("block_influence", "skip_loss")


def block_influence(model_or_split: Any, calib: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """``[L]`` mean ``1 - cos(x_in, x_out)`` per block (a bypassed block scores 0)."""
    total, count = stats.block_influence_sums(model_or_split, calib)
    return total / count


@functools.partial(jax.jit, static_argnums=(0, 4))
def _masked_loss(graphdef, params, rest, masks, head_dim, batch):
    return stats._loss_sum(apply_masks(params, masks, head_dim), graphdef, rest, batch)


def skip_loss(model_or_split: Any, calib: Iterable[Mapping[str, Any]], masks: Masks | None = None) -> np.ndarray:
    """``[L]`` increase of the mean loss when each block is bypassed on top of ``masks``."""
    graphdef, params, rest = stats.as_split(model_or_split)
    cfg = nnx.merge(graphdef, params, rest).config
    masks = masks if masks is not None else full_masks(cfg)
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in calib]
    if not batches:
        raise ValueError("calibration batches: expected at least one batch, got none")

    def mean_loss(m: Masks) -> float:
        sums = [_masked_loss(graphdef, params, rest, m, cfg.head_dim, b) for b in batches]
        return float(sum(s for s, _ in sums)) / max(float(sum(n for _, n in sums)), 1.0)

    base = mean_loss(masks)
    out = np.zeros(cfg.num_layers)
    for i in range(cfg.num_layers):
        if float(masks.layers[i]) == 0.0:
            continue  # already bypassed: skipping it again changes nothing
        out[i] = mean_loss(masks.replace(layers=masks.layers.at[i].set(0.0))) - base
    return out


def layer_scores(
    model_or_split: Any, criterion: str, calib: Iterable[Mapping[str, Any]], masks: Masks | None = None
) -> np.ndarray:
    """``[L]`` layer scores by ``criterion`` (higher = more important)."""
    if criterion == "block_influence":
        return block_influence(model_or_split, calib)
    if criterion == "skip_loss":
        return skip_loss(model_or_split, calib, masks)
    raise ValueError(f"criterion: {criterion!r} is not a layer criterion; expected one of {list(LAYER_CRITERIA)}")
