"""Per-stage evaluation: held-out code and text perplexity, next-line task accuracy."""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.ptl.corpora import Choice
from jaxlab.train.loss import token_losses
from jaxlab.train.step import evaluate


@functools.partial(jax.jit, static_argnums=0)
def _row_nll(graphdef, params, rest, ids, mask):
    logits = nnx.merge(graphdef, params, rest)(ids[:, :-1])
    nll = token_losses(logits, ids[:, 1:]) * mask[:, 1:]
    return jnp.sum(nll, axis=1), jnp.sum(mask[:, 1:], axis=1)


def choice_accuracy(split: tuple, items: Sequence[Choice], batch_rows: int = 16, pad_id: int = 0) -> float:
    """Fraction of items whose true line has the lowest mean NLL among the candidates."""
    if not items:
        return float("nan")
    rows, masks = [], []
    for it in items:
        for cand in it.candidates:
            rows.append(it.context + cand)
            masks.append([0] * len(it.context) + [1] * len(cand))
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = r
        mask[i, :len(m)] = m
    pad = (-len(rows)) % batch_rows
    ids = np.concatenate([ids, np.full((pad, width), pad_id, np.int32)])
    mask = np.concatenate([mask, np.zeros((pad, width), np.float32)])
    graphdef, params, rest = split
    sums, counts = [], []
    for s in range(0, len(ids), batch_rows):
        a, b = _row_nll(graphdef, params, rest, jnp.asarray(ids[s:s + batch_rows]), jnp.asarray(mask[s:s + batch_rows]))
        sums.append(np.asarray(a))
        counts.append(np.asarray(b))
    mean = (np.concatenate(sums) / np.maximum(np.concatenate(counts), 1))[: len(rows)]
    per_item = mean.reshape(len(items), -1)
    return float(np.mean(np.argmin(per_item, axis=1) == 0))


def evaluate_stage(split: tuple, code: list[dict], text: list[dict], items: Sequence[Choice]) -> dict[str, Any]:
    """``{"code_ppl", "text_ppl", "accuracy"}`` of the (masked) model given as ``(graphdef, params, rest)``."""
    code_ppl = evaluate(split, code)["perplexity"]
    text_ppl = evaluate(split, text)["perplexity"]
    acc = choice_accuracy(split, items)
    return {"code_ppl": code_ppl if math.isfinite(code_ppl) else float("inf"),
            "text_ppl": text_ppl if math.isfinite(text_ppl) else float("inf"), "accuracy": acc}
