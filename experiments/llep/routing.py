"""Synthetic router outputs with controlled skew, and the per-device counts the planners see.

Each token picks ``top_k`` distinct experts by sampling without replacement
from a popularity distribution (Gumbel top-k), so no expert can take more than
one copy of a token, as with a real router.
"""

from __future__ import annotations

import numpy as np

SKEWS = ("uniform", "zipf:1.0", "zipf:1.5", "zipf:2.0", "hot:0.3", "hot:0.6", "hot:0.9")


def popularity(skew: str, num_experts: int, rng: np.random.Generator) -> np.ndarray | None:
    """Expert probabilities for ``uniform`` / ``zipf:<s>``; None for ``hot:<share>`` (handled apart)."""
    if skew == "uniform":
        return np.full(num_experts, 1.0 / num_experts)
    kind, _, value = skew.partition(":")
    if kind == "zipf":
        weights = 1.0 / np.arange(1, num_experts + 1) ** float(value)
        return rng.permutation(weights / weights.sum())
    if kind == "hot":
        return None
    raise ValueError(f"skew must be uniform, zipf:<exponent> or hot:<share>, got {skew!r}")


def route(skew: str, tokens: int, top_k: int, num_experts: int, seed: int = 0) -> np.ndarray:
    """Expert ids [tokens, top_k].  ``hot:<share>``: that share of tokens picks expert 0."""
    rng = np.random.default_rng(seed)
    probs = popularity(skew, num_experts, rng)
    if probs is None:
        share = float(skew.partition(":")[2])
        if not 0.0 < share <= 1.0:
            raise ValueError(f"hot share must be in (0, 1], got {share}")
        hot = rng.random(tokens) < share
        logits = np.zeros((tokens, num_experts))
        logits[hot, 0] = np.inf
        logits[~hot, 0] = -np.inf  # the rest avoid it, so its share is exactly `share`
    else:
        logits = np.broadcast_to(np.log(probs), (tokens, num_experts)).copy()
    gumbel = rng.gumbel(size=(tokens, num_experts))
    return np.argsort(-(logits + gumbel), axis=1)[:, :top_k].astype(np.int32)


def counts_by_source(expert_ids: np.ndarray, num_devices: int, num_experts: int) -> np.ndarray:
    """[D, E]: token copies of each expert that start on each device (tokens split evenly)."""
    per_device = expert_ids.reshape(num_devices, -1)
    return np.stack([np.bincount(row, minlength=num_experts) for row in per_device])
