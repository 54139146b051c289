"""Verifiers rank candidate steps: LLM judges and reward models behind one ``rank`` method.

* :class:`LLMJudge` — ``ranking`` mode asks for ``<ranking>2,1,3</ranking>``
  over all candidates at once; ``pointwise`` scores each 1-10.
* Reward models implement :class:`RewardModel` (``score(task, contexts) ->
  floats``): :class:`LLMRewardModel` prompts the client as an outcome (ORM) or
  process (PRM) reward model; :class:`ScalarHeadRewardModel` is the seam for a
  jaxlab model with a scalar head (any ``texts -> scores`` function).
Malformed verifier output raises :class:`VerifierError`; the context counts it.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Protocol, Sequence

from experiments.mas_prove.core import Meter, VerifierError, call
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import ChatClient

KINDS = ("judge_ranking", "judge_pointwise", "orm", "prm")


class Verifier(Protocol):
    def rank(self, task: str, contexts: list[str]) -> list[int]: ...


class RewardModel(Protocol):
    def score(self, task: str, contexts: list[str]) -> list[float]: ...


def _tag(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.DOTALL)
    if m is None:
        raise VerifierError(f"no <{tag}>...</{tag}> in verifier output: {text.strip()[:200]!r}")
    return m.group(1)


def _tagged_number(text: str, tag: str, low: float, high: float) -> float:
    """The number inside ``<tag>...</tag>``, checked to lie in ``[low, high]``."""
    try:
        value = float(_tag(text, tag))
    except ValueError as exc:
        raise VerifierError(f"{tag} is not a number: {text.strip()[:200]!r}") from exc
    if not low <= value <= high:
        raise VerifierError(f"{tag} {value:g} outside [{low:g}, {high:g}]")
    return value


class LLMJudge:
    def __init__(self, client: ChatClient, meter: Meter, mode: str = "ranking", seed: int = 0) -> None:
        if mode not in ("ranking", "pointwise"):
            raise ValueError(f"mode: expected 'ranking' or 'pointwise', got {mode!r}")
        self.client, self.meter, self.mode, self.seed = client, meter, mode, seed

    def _ask(self, prompt: str) -> str:
        return call(self.client, self.meter, prompt, "You are a meticulous judge of reasoning steps.", 0.0, 512,
                    self.seed)

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        if self.mode == "pointwise":
            scores = map_bounded(lambda c: self._score(task, c), contexts, len(contexts))
            return sorted(range(len(contexts)), key=lambda i: -scores[i])
        body = "\n\n".join(f"Candidate {i + 1}:\n{c}" for i, c in enumerate(contexts))
        out = self._ask(f"Task:\n{task}\n\n{body}\n\nRank the candidates from most to least likely to be a correct "
                        f"step toward the answer. Reply with <ranking>i,j,...</ranking> using numbers 1.."
                        f"{len(contexts)}, each exactly once.")
        try:
            ranking = [int(x) - 1 for x in re.split(r"[,\s>]+", _tag(out, "ranking").strip()) if x]
        except ValueError as exc:
            raise VerifierError(f"ranking is not a list of integers: {out.strip()[:200]!r}") from exc
        if sorted(ranking) != list(range(len(contexts))):
            raise VerifierError(f"ranking {[r + 1 for r in ranking]} is not a permutation of 1..{len(contexts)}")
        return ranking

    def _score(self, task: str, context: str) -> float:
        out = self._ask(f"Task:\n{task}\n\n{context}\n\nRate the correctness and usefulness of the current step "
                        "from 1 to 10. Reply with <score>n</score>.")
        return _tagged_number(out, "score", 1, 10)


class LLMRewardModel:
    """A reward model emulated by prompting: ``outcome`` judges the answer, ``process`` the step."""

    PROMPTS = {
        "outcome": "Estimate the probability that the final answer reached here is correct.",
        "process": "Estimate the probability that the current step is correct given the context.",
    }

    def __init__(self, client: ChatClient, meter: Meter, kind: str = "process", seed: int = 0) -> None:
        if kind not in self.PROMPTS:
            raise ValueError(f"kind: expected one of {sorted(self.PROMPTS)}, got {kind!r}")
        self.client, self.meter, self.kind, self.seed = client, meter, kind, seed

    def _one(self, task: str, context: str) -> float:
        out = call(self.client, self.meter, f"Task:\n{task}\n\n{context}\n\n{self.PROMPTS[self.kind]} Reply with "
                   "<reward>p</reward>, p between 0 and 1.", "You are a reward model.", 0.0, 64, self.seed)
        return _tagged_number(out, "reward", 0.0, 1.0)

    def score(self, task: str, contexts: list[str]) -> list[float]:
        return map_bounded(lambda c: self._one(task, c), contexts, len(contexts))


class ScalarHeadRewardModel:
    """Seam for a jaxlab reward model: ``score_fn`` maps formatted texts to scalars (one forward each)."""

    def __init__(self, score_fn: Callable[[list[str]], Sequence[float]],
                 template: str = "Task:\n{task}\n\n{context}") -> None:
        self.score_fn, self.template = score_fn, template

    def score(self, task: str, contexts: list[str]) -> list[float]:
        scores = [float(s) for s in self.score_fn([self.template.format(task=task, context=c) for c in contexts])]
        if len(scores) != len(contexts):
            raise VerifierError(f"score_fn returned {len(scores)} scores for {len(contexts)} texts")
        return scores


class RewardModelVerifier:
    """Ranks by reward, highest first (stable: ties keep candidate order)."""

    def __init__(self, model: RewardModel) -> None:
        self.model = model

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        scores = self.model.score(task, contexts)
        if any(math.isnan(s) for s in scores):
            raise VerifierError(f"reward model returned NaN: {scores}")
        return sorted(range(len(contexts)), key=lambda i: -scores[i])


def make_verifier(kind: str, client: ChatClient, meter: Meter, seed: int = 0) -> Verifier:
    if kind == "judge_ranking":
        return LLMJudge(client, meter, "ranking", seed)
    if kind == "judge_pointwise":
        return LLMJudge(client, meter, "pointwise", seed)
    if kind in ("orm", "prm"):
        return RewardModelVerifier(LLMRewardModel(client, meter, "outcome" if kind == "orm" else "process", seed))
    raise ValueError(f"verifier: expected one of {list(KINDS)}, got {kind!r}")
