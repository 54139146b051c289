"""Per-stage evaluation: held-out code and text perplexity with bootstrap intervals, next-line accuracy, GSM8K.

Perplexity is computed per window (sum of token NLLs and token count per held-out window), so a row
carries its per-window numbers and any two rows evaluated on the same windows can be compared with a
*paired* bootstrap (:func:`paired_ratio`): the same resampled windows for both models. Intervals are
percentile bootstrap over windows (95%, 1,000 resamples, fixed seed); windows cut from the same file
are correlated, so these intervals are if anything too narrow.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from experiments.ptl.corpora import Choice
from jaxlab.train.loss import token_losses

N_BOOT = 1000
LEVEL = 0.95


EVAL_CHUNK_ROWS = 4
"""Rows per forward pass inside one evaluation call: the full-vocabulary logits (``rows x seq x vocab``
floats, 0.4 GB for 16 SmolLM2 windows of 128 tokens) are the largest buffer of an evaluation, so a batch
is run ``EVAL_CHUNK_ROWS`` rows at a time under ``lax.map`` (one program, same per-row sums)."""


def _by_chunks(fn, chunk: int, *arrays: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``fn(*rows) -> (sum [r], count [r])`` over ``chunk``-row slices of ``arrays`` (zero rows pad the last)."""
    rows = arrays[0].shape[0]
    chunk = max(1, min(chunk, rows))
    pad = (-rows) % chunk
    split = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(-1, chunk, *a.shape[1:]) for a in arrays]
    sums, counts = jax.lax.map(lambda xs: fn(*xs), split)
    return sums.reshape(-1)[:rows], counts.reshape(-1)[:rows]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _row_nll(graphdef, params, rest, ids, mask, chunk=EVAL_CHUNK_ROWS):
    def rows(ids, mask):
        logits = nnx.merge(graphdef, params, rest)(ids[:, :-1])
        nll = token_losses(logits, ids[:, 1:]) * mask[:, 1:]
        return jnp.sum(nll, axis=1), jnp.sum(mask[:, 1:], axis=1)

    return _by_chunks(rows, chunk, ids, mask)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _batch_nll(graphdef, params, rest, batch, chunk=EVAL_CHUNK_ROWS):
    def rows(ids, targets, mask):
        logits = nnx.merge(graphdef, params, rest)(ids)
        mask = mask.astype(jnp.float32)
        return jnp.sum(token_losses(logits, targets) * mask, axis=1), jnp.sum(mask, axis=1)

    return _by_chunks(rows, chunk, batch["input_ids"], batch["targets"], batch["loss_mask"])


def window_nll(
    split: tuple,
    batches: Sequence[dict],
    desc: str = "eval windows",
    chunk_rows: int = EVAL_CHUNK_ROWS,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(nll_sum [W], tokens [W])`` per window (batch row) over ``batches``; rows with no tokens are dropped.

    ``chunk_rows`` rows go through the model at a time (see :data:`EVAL_CHUNK_ROWS`)."""
    graphdef, params, rest = split
    sums, counts = [], []
    for b in tqdm(batches, desc=desc, unit="batch", leave=False, disable=not progress):
        s, n = _batch_nll(
            graphdef, params, rest, {k: jnp.asarray(b[k]) for k in ("input_ids", "targets", "loss_mask")}, chunk_rows
        )
        sums.append(np.asarray(s, np.float64))
        counts.append(np.asarray(n, np.float64))
    if not sums:
        raise ValueError("window_nll: expected at least one batch, got none")
    s, n = np.concatenate(sums), np.concatenate(counts)
    return s[n > 0], n[n > 0]


def _resample(n: int, seed: int, n_boot: int = N_BOOT) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def _interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    a = (1.0 - level) / 2
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_ppl(nll: np.ndarray, tokens: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Corpus perplexity ``exp(sum nll / sum tokens)`` and its percentile bootstrap interval over windows."""
    nll, tokens = np.asarray(nll, np.float64), np.asarray(tokens, np.float64)
    if nll.size == 0:
        raise ValueError("bootstrap_ppl: expected at least one window, got none")
    idx = _resample(len(nll), seed, n_boot)
    with np.errstate(over="ignore"):
        ppl = math.exp(min(nll.sum() / tokens.sum(), 700.0))
        boot = np.exp(np.minimum(nll[idx].sum(1) / tokens[idx].sum(1), 700.0))
    return {"ppl": ppl, "ci": _interval(boot), "windows": int(len(nll)), "tokens": int(tokens.sum())}


def paired_ratio(
    nll_a: np.ndarray, nll_b: np.ndarray, tokens: np.ndarray, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """``ppl_a / ppl_b`` on the same windows with a paired bootstrap interval (the same resamples for both).

    ``significant`` is True when the interval excludes 1.
    """
    nll_a, nll_b, tokens = (np.asarray(x, np.float64) for x in (nll_a, nll_b, tokens))
    if not (len(nll_a) == len(nll_b) == len(tokens)) or len(tokens) == 0:
        raise ValueError(
            f"paired_ratio: expected equal, non-empty window arrays, got {len(nll_a)}, {len(nll_b)}, {len(tokens)}"
        )
    idx = _resample(len(tokens), seed, n_boot)
    diff = nll_a - nll_b
    ratio = math.exp(diff.sum() / tokens.sum())
    boot = np.exp(diff[idx].sum(1) / tokens[idx].sum(1))
    lo, hi = _interval(boot)
    return {"ratio": ratio, "ci": (lo, hi), "significant": bool(lo > 1.0 or hi < 1.0)}


def bootstrap_mean(values: Sequence[float], seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Mean of per-item 0/1 (or real) scores and its percentile bootstrap interval over items."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "ci": (float("nan"), float("nan")), "n": 0}
    return {"mean": float(v.mean()), "ci": _interval(v[_resample(len(v), seed, n_boot)].mean(1)), "n": int(v.size)}


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """``mean(a) - mean(b)`` over the same items, with a paired bootstrap interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_difference: expected equal, non-empty item arrays, got {a.shape} and {b.shape}")
    d = a - b
    lo, hi = _interval(d[_resample(len(d), seed, n_boot)].mean(1))
    return {"diff": float(d.mean()), "ci": (lo, hi), "significant": bool(lo > 0 or hi < 0)}


def choice_correct(split: tuple, items: Sequence[Choice], batch_rows: int = 16, pad_id: int = 0) -> np.ndarray:
    """Per item 1.0 when the true line has the lowest mean NLL among the candidates, else 0.0."""
    if not items:
        return np.zeros(0)
    rows, masks = [], []
    for it in items:
        for cand in it.candidates:
            rows.append(it.context + cand)
            masks.append([0] * len(it.context) + [1] * len(cand))
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, : len(r)] = r
        mask[i, : len(m)] = m
    pad = (-len(rows)) % batch_rows
    ids = np.concatenate([ids, np.full((pad, width), pad_id, np.int32)])
    mask = np.concatenate([mask, np.zeros((pad, width), np.float32)])
    graphdef, params, rest = split
    sums, counts = [], []
    for s in tqdm(range(0, len(ids), batch_rows), desc="eval next-line task", unit="batch", leave=False):
        a, b = _row_nll(
            graphdef,
            params,
            rest,
            jnp.asarray(ids[s : s + batch_rows]),
            jnp.asarray(mask[s : s + batch_rows]),
            EVAL_CHUNK_ROWS,
        )
        sums.append(np.asarray(a))
        counts.append(np.asarray(b))
    mean = (np.concatenate(sums) / np.maximum(np.concatenate(counts), 1))[: len(rows)]
    per_item = mean.reshape(len(items), -1)
    return (np.argmin(per_item, axis=1) == 0).astype(np.float64)


def choice_accuracy(split: tuple, items: Sequence[Choice], batch_rows: int = 16, pad_id: int = 0) -> float:
    """Fraction of items whose true line has the lowest mean NLL among the candidates."""
    if not items:
        return float("nan")
    return float(np.mean(choice_correct(split, items, batch_rows, pad_id)))


def evaluate_stage(
    split: tuple, code: list[dict], text: list[dict], items: Sequence[Choice], generation: Any = None
) -> dict[str, Any]:
    """Metrics of the (masked) model given as ``(graphdef, params, rest)``.

    ``code_ppl`` / ``text_ppl`` with ``*_ci`` (95% bootstrap over windows), ``accuracy`` (next-line task) with
    ``accuracy_ci``, and, when ``generation`` (``(split) -> {"name", "correct": [0/1 per row]}``) is given,
    ``<name>`` accuracy with its interval. ``per_window`` / ``per_item`` hold what paired comparisons need.
    """
    out: dict[str, Any] = {}
    per_window: dict[str, list] = {}
    for name, batches in (("code", code), ("text", text)):
        nll, tok = window_nll(split, batches, desc=f"eval {name} perplexity")
        b = bootstrap_ppl(nll, tok)
        finite = math.isfinite(b["ppl"])
        out[f"{name}_ppl"] = b["ppl"] if finite else float("inf")
        out[f"{name}_ppl_ci"] = list(b["ci"])
        out[f"{name}_tokens"] = b["tokens"]
        per_window[name] = [nll.tolist(), tok.tolist()]
    correct = choice_correct(split, items)
    acc = bootstrap_mean(correct)
    out["accuracy"], out["accuracy_ci"] = acc["mean"], list(acc["ci"])
    per_item = {"task": correct.tolist()}
    if generation is not None:
        g = generation(split)
        m = bootstrap_mean(g["correct"])
        out[g["name"]], out[f"{g['name']}_ci"], out[f"{g['name']}_n"] = m["mean"], list(m["ci"]), m["n"]
        per_item[g["name"]] = list(map(float, g["correct"]))
    out["per_window"], out["per_item"] = per_window, per_item
    return out
