"""MaAS's learned controller, small: per layer, a query-conditioned distribution over the operator supernet.

As in MaAS's ``MultiLayerController``: the query and each operator are embedded, layer ``l`` scores operator
``o`` by ``(W_q q) . (W_o [e_o; e_prev])`` (``e_prev``: the first operator chosen in the layer before), a
softmax gives probabilities, and operators are drawn without replacement until their probabilities add up
to ``threshold`` (0.3).  Layer 0 must start with a generating operator: an ``EarlyStop`` drawn there becomes
``Generate`` and ends the plan, a layer 0 without a generator becomes ``Generate`` and the plan goes on, else
the first generator drawn moves to the front; an ``EarlyStop`` in a later layer ends the plan.  The policy
gradient is taken over the plan that runs (MaAS's log-probability of the replaced selection).

Differences from MaAS (``mas/maas/maas/ext/maas/models/controller.py``, ``benchmark/benchmark.py``), for a
CPU-sized controller: the embeddings are hashed bags of words (MaAS uses a 384-d sentence encoder); the scores
are not L2-normalised (MaAS normalises both sides, which caps the logits at +-1 and keeps the distribution
near uniform for a small model); the update is REINFORCE per task with a running-mean baseline and plain SGD on
``correct - cost_weight x calls`` (MaAS: ``score - 3 x dollar cost``, batch-mean loss, no baseline, Adam lr
0.01; Adam's normalised steps let one early success outweigh many later failures with a policy this small).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPERATORS = {
    "Generate": "generate a direct solution to the problem",
    "GenerateCoT": "generate a step by step chain of thought solution",
    "MultiGenerateCoT": "generate several chain of thought solutions for an ensemble",
    "ScEnsemble": "self consistency ensemble choose the most consistent answer among solutions",
    "Programmer": "write and run python code that computes the answer",
    "SelfRefine": "review the current solution and refine its errors",
    "EarlyStop": "stop the workflow the current answer is final",
}
NAMES = tuple(OPERATORS)
GENERATORS = ("Generate", "GenerateCoT", "MultiGenerateCoT")


def embed(text: str, dim: int = 64) -> np.ndarray:
    """Hashed bag of words (signed), L2-normalised; the same text always maps to the same vector."""
    v = np.zeros(dim, np.float32)
    for tok in re.findall(r"[a-z0-9]+", text.lower()):
        h = int.from_bytes(hashlib.sha1(tok.encode()).digest()[:4], "big")
        v[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    n = np.linalg.norm(v)
    return v / n if n else v


def threshold_sample(probs: np.ndarray, rng: np.random.Generator, threshold: float) -> list[int]:
    """Draw distinct indices (renormalised over the rest) until their probabilities reach ``threshold``."""
    selected: list[int] = []
    remaining = list(range(len(probs)))
    total = 0.0
    while total < threshold and remaining:
        p = probs[remaining] / probs[remaining].sum()
        idx = remaining.pop(int(rng.choice(len(remaining), p=p)))
        selected.append(idx)
        total += float(probs[idx])
    return selected or [int(np.argmax(probs))]


def _layer_logits(params: dict, layer: int, q: jnp.ndarray, ops: jnp.ndarray, prev: jnp.ndarray) -> jnp.ndarray:
    inp = ops if layer == 0 else jnp.concatenate([ops, jnp.broadcast_to(prev, ops.shape)], axis=1)
    return (inp @ params[f"o{layer}"].T) @ (params[f"q{layer}"] @ q)


class Controller:
    def __init__(
        self,
        num_layers: int = 4,
        hidden: int = 16,
        dim: int = 64,
        threshold: float = 0.3,
        lr: float = 0.5,
        seed: int = 0,
    ) -> None:
        if num_layers < 1 or not 0 < threshold <= 1:
            raise ValueError(f"num_layers >= 1 and threshold in (0, 1] expected, got {num_layers}, {threshold}")
        self.num_layers, self.dim, self.threshold = num_layers, dim, threshold
        keys = jax.random.split(jax.random.PRNGKey(seed), 2 * num_layers)
        self.params = {}
        for l in range(num_layers):
            self.params[f"q{l}"] = 0.3 * jax.random.normal(keys[2 * l], (hidden, dim))
            self.params[f"o{l}"] = 0.3 * jax.random.normal(keys[2 * l + 1], (hidden, dim if l == 0 else 2 * dim))
        self.ops = jnp.asarray(np.stack([embed(f"{n} {d}", dim) for n, d in OPERATORS.items()]))
        self.opt = optax.sgd(lr)
        self.opt_state = self.opt.init(self.params)
        self.baseline = 0.0

    def probs(self, query: str, layer: int, prev: str | None = None) -> np.ndarray:
        q = jnp.asarray(embed(query, self.dim))
        prev_e = self.ops[NAMES.index(prev)] if prev else jnp.zeros(self.dim)
        return np.asarray(jax.nn.softmax(_layer_logits(self.params, layer, q, self.ops, prev_e)), np.float64)

    def sample(self, query: str, seed: int) -> list[list[str]]:
        """The operator layers for ``query`` (deterministic given ``seed``)."""
        return self.sample_with_choices(query, seed)[0]

    def sample_with_choices(self, query: str, seed: int) -> tuple[list[list[str]], list[list[str]]]:
        """(the plan to run, the operators actually drawn per layer): they differ where the layer-0 rule
        replaced or reordered the draw.  The policy gradient uses the plan, as MaAS's log-probability is taken
        over the replaced selection (its -1.5 penalty is a constant and adds no gradient)."""
        rng = np.random.default_rng(seed)
        plan: list[list[str]] = []
        drawn: list[list[str]] = []
        prev = None
        for layer in range(self.num_layers):
            names = [NAMES[i] for i in threshold_sample(self.probs(query, layer, prev), rng, self.threshold)]
            drawn.append(names)
            if layer == 0:
                gens = [n for n in names if n in GENERATORS]
                if "EarlyStop" in names:  # MaAS: replaced by Generate (scored with a -1.5 penalty), plan ends
                    plan.append(["Generate"])
                    break
                # no generator drawn: replaced by Generate and the plan goes on; else the first generator leads
                names = ["Generate"] if not gens else [gens[0]] + [n for n in names if n != gens[0]]
            plan.append(names)
            if "EarlyStop" in names:
                break
            prev = names[0]
        return plan, drawn

    def _loss(self, params: dict, q: jnp.ndarray, masks: jnp.ndarray, prevs: jnp.ndarray, advantage: float):
        total = 0.0
        for layer in range(masks.shape[0]):
            logp = jax.nn.log_softmax(_layer_logits(params, layer, q, self.ops, prevs[layer]))
            total = total + jnp.sum(masks[layer] * logp)
        return -advantage * total

    def update(self, query: str, plan: list[list[str]], utility: float, momentum: float = 0.9) -> None:
        """One REINFORCE step: raise (or lower) the log-probability of the drawn operators ``plan`` by the
        utility's advantage over the running baseline."""
        masks = np.zeros((len(plan), len(NAMES)), np.float32)
        prevs = np.zeros((len(plan), self.dim), np.float32)
        for layer, names in enumerate(plan):
            for n in names:
                masks[layer, NAMES.index(n)] = 1.0
            if layer > 0:
                prevs[layer] = np.asarray(self.ops[NAMES.index(plan[layer - 1][0])])
        grads = jax.grad(self._loss)(
            self.params,
            jnp.asarray(embed(query, self.dim)),
            jnp.asarray(masks),
            jnp.asarray(prevs),
            utility - self.baseline,
        )
        updates, self.opt_state = self.opt.update(grads, self.opt_state, self.params)
        self.params = optax.apply_updates(self.params, updates)
        self.baseline = momentum * self.baseline + (1 - momentum) * utility

    def train(
        self, queries: Sequence[str], utility: Callable[[str, list[list[str]]], float], steps: int, seed: int = 0
    ) -> list[float]:
        """Sample, score, update; returns the utilities seen (the learning curve)."""
        curve = []
        for step in range(steps):
            q = queries[step % len(queries)]
            plan, drawn = self.sample_with_choices(q, seed * 1_000_003 + step)
            u = float(utility(q, plan))
            self.update(q, plan, u)
            curve.append(u)
        return curve

    def save(self, path: str | Path) -> None:
        np.savez(path, **{k: np.asarray(v) for k, v in self.params.items()})

    def load(self, path: str | Path) -> "Controller":
        with np.load(path) as data:
            for k in self.params:
                if k not in data or data[k].shape != self.params[k].shape:
                    raise ValueError(f"controller file {str(path)!r}: {k} missing or of the wrong shape")
                self.params[k] = jnp.asarray(data[k])
        self.opt_state = self.opt.init(self.params)
        return self
