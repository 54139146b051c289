"""The verifier paradigms MAS-ProVe compares, each behind one ``rank(task, contexts)`` method.

A *context* is what the verifier sees for one candidate (built by the context
strategy: trajectory and/or summary, then the current step).

* LLM-as-a-judge, ``judge_ranking`` (the authors' judge server, its prompt
  verbatim from :mod:`experiments.mas_prove.prompts`): all candidates in one
  prompt, each between ``<|Candidate i Response|>`` and ``<|End of Candidate i|>``
  under the ``<|User Prompt|>``; the judge explains, then answers
  ``<ranking>2,1,3</ranking>``.  ``judge_pointwise`` scores each 1-10 (not in the
  authors' code; an extra paradigm kept for comparison).
* ``fare`` (the authors' FARE server, its prompt verbatim): a verdict judge that
  names the single best answer as ``[A]``/``[B]``/``[C]``; the ranking is the
  winner, then the others in their original order.
* Outcome reward model, ``orm`` (alias ``rm``; Skywork-Reward-V2 in the
  paper): ONE scalar per candidate for the (question, whole response)
  conversation; ranking by that scalar.
* Process reward model, ``prm`` (Qwen2.5-Math-PRM in the paper): the response is
  split into steps at blank lines (the Qwen PRM convention), a separator
  ``<extra_0>`` follows every step, the model gives P(correct) at each
  separator, and the candidate's reward aggregates them (``min`` by default:
  one wrong step sinks the solution).  ``split=False`` reproduces the
  authors' server exactly: one separator after context + step, reward there.

The RM/PRM scorers are pluggable: :class:`ChatOutcomeScorer` /
:class:`ChatStepScorer` emulate them with a chat model (so a run needs only a
chat endpoint); :class:`FunctionOutcomeScorer` / :class:`FunctionStepScorer`
wrap a real scoring function (a jaxlab reward model, a vLLM ``/pooling``
endpoint).  Malformed verifier output raises :class:`VerifierError`; the
context counts it as a fallback.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Protocol, Sequence

from experiments.mas_prove.core import Meter, VerifierError, call
from experiments.mas_prove.prompts import JUDGE_SYSTEM, fare_system, fare_user, judge_user
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import ChatClient

KINDS = ("judge_ranking", "judge_pointwise", "fare", "orm", "prm")
ALIASES = {"judge": "judge_ranking", "rm": "orm"}
STEP_SEPARATOR = "<extra_0>"
PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
AGGREGATES = ("min", "prod", "mean", "last")


class Verifier(Protocol):
    def rank(self, task: str, contexts: list[str]) -> list[int]: ...


class OutcomeScorer(Protocol):
    def score(self, task: str, responses: list[str]) -> list[float]: ...


class StepScorer(Protocol):
    def step_rewards(self, task: str, steps: list[str]) -> list[float]: ...


def _tag(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.DOTALL)
    if m is None:
        raise VerifierError(f"no <{tag}>...</{tag}> in verifier output: {text.strip()[:200]!r}")
    return m.group(1)


def _numbers(text: str, what: str, low: float, high: float) -> list[float]:
    try:
        values = [float(x) for x in re.split(r"[,\s]+", text.strip()) if x]
    except ValueError as exc:
        raise VerifierError(f"{what} is not a list of numbers: {text.strip()[:200]!r}") from exc
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise VerifierError(f"{what} {bad} outside [{low:g}, {high:g}]")
    return values


def by_score(scores: Sequence[float]) -> list[int]:
    """Indices by score, highest first; ties keep candidate order; NaN is an error."""
    if any(math.isnan(s) for s in scores):
        raise VerifierError(f"reward model returned NaN: {list(scores)}")
    return sorted(range(len(scores)), key=lambda i: -scores[i])


class LLMJudge:
    """LLM-as-a-judge: ``ranking`` (listwise, the authors' judge) or ``pointwise`` (1-10 per candidate)."""

    def __init__(self, client: ChatClient, meter: Meter, mode: str = "ranking", seed: int = 0) -> None:
        if mode not in ("ranking", "pointwise"):
            raise ValueError(f"mode: expected 'ranking' or 'pointwise', got {mode!r}")
        self.client, self.meter, self.mode, self.seed = client, meter, mode, seed

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        if self.mode == "pointwise":
            return by_score(map_bounded(lambda c: self._score(task, c), contexts, len(contexts)))
        out = call(self.client, self.meter, judge_user(task, contexts), JUDGE_SYSTEM, 0.0, 2048, self.seed)
        ranking = [
            int(v) - 1 for v in _numbers(_tag(out, "ranking"), "ranking", 1, len(contexts)) if float(v).is_integer()
        ]
        if sorted(ranking) != list(range(len(contexts))):
            raise VerifierError(f"ranking {[r + 1 for r in ranking]} is not a permutation of 1..{len(contexts)}")
        return ranking

    def _score(self, task: str, context: str) -> float:
        out = call(
            self.client,
            self.meter,
            f"<|User Prompt|>\n{task}\n\n<|Response|>\n{context}\n<|End of Response|>"
            "\n\nRate the correctness and quality of the response from 1 to 10. Explain, then reply "
            "<score>n</score>.",
            "You are an impartial judge of solutions.",
            0.0,
            1024,
            self.seed,
        )
        return _numbers(_tag(out, "score"), "score", 1, 10)[0]


class FAREJudge:
    """Verdict judge (the authors' FARE server): names the best answer ``[A]``..; ranking = winner, then the rest in
    their original order.

    The verdict is the first ``[X]`` after the last ``Verdict:``; without a ``Verdict:`` line, the first ``[X]``
    anywhere (the authors' ``re.search``).  A letter outside the candidates is a :class:`VerifierError` (the
    authors' server silently falls back to ``[0, 1, 2]``; here the context counts the fallback).
    """

    def __init__(self, client: ChatClient, meter: Meter, seed: int = 0) -> None:
        self.client, self.meter, self.seed = client, meter, seed

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        if not 2 <= len(contexts) <= 26:
            raise VerifierError(f"fare compares 2..26 answers, got {len(contexts)}")
        out = call(self.client, self.meter, fare_user(task, contexts), fare_system(len(contexts)), 0.0, 2048, self.seed)
        verdict = out.rsplit("Verdict:", 1)[-1]
        found = re.search(r"\[([A-Z])\]", verdict)
        letters = [chr(65 + i) for i in range(len(contexts))]
        if found is None or found.group(1) not in letters:
            raise VerifierError(f"no verdict [{'/'.join(letters)}] in FARE output: {out.strip()[-200:]!r}")
        win = letters.index(found.group(1))
        return [win] + [i for i in range(len(contexts)) if i != win]


class ChatOutcomeScorer:
    """An outcome reward model emulated by a chat model: one reward in [0, 1] for the whole response."""

    SYSTEM = (
        "You are an outcome reward model. Given a question and a complete response, estimate the probability "
        "that the response's final answer is correct. Reply with <reward>p</reward> only."
    )

    def __init__(self, client: ChatClient, meter: Meter, seed: int = 0) -> None:
        self.client, self.meter, self.seed = client, meter, seed

    def _one(self, task: str, response: str) -> float:
        out = call(
            self.client, self.meter, f"Question:\n{task}\n\nResponse:\n{response}", self.SYSTEM, 0.0, 64, self.seed
        )
        return _numbers(_tag(out, "reward"), "reward", 0.0, 1.0)[0]

    def score(self, task: str, responses: list[str]) -> list[float]:
        return map_bounded(lambda r: self._one(task, r), responses, len(responses))


class ChatStepScorer:
    """A process reward model emulated by a chat model: P(step correct | question, earlier steps) per step."""

    SYSTEM = (
        "You are a process reward model. Given a question and a solution split into steps, each step followed "
        f"by {STEP_SEPARATOR}, estimate for every step the probability that it is correct given the steps "
        "before it. Reply with <step_rewards>p1, p2, ...</step_rewards>, exactly one number per step."
    )

    def __init__(self, client: ChatClient, meter: Meter, seed: int = 0) -> None:
        self.client, self.meter, self.seed = client, meter, seed

    def step_rewards(self, task: str, steps: list[str]) -> list[float]:
        body = "".join(f"{s}{STEP_SEPARATOR}\n" for s in steps)
        out = call(
            self.client,
            self.meter,
            f"Question:\n{task}\n\nSolution ({len(steps)} steps):\n{body}",
            self.SYSTEM,
            0.0,
            32 + 8 * len(steps),
            self.seed,
        )
        values = _numbers(_tag(out, "step_rewards"), "step_rewards", 0.0, 1.0)
        if len(values) != len(steps):
            raise VerifierError(f"step_rewards has {len(values)} values for {len(steps)} steps")
        return values


def prm_messages(task: str, steps: list[str]) -> list[dict]:
    """The Qwen2.5-Math-PRM input: the math system prompt, the question, the steps each closed by the separator."""
    return [
        {"role": "system", "content": PRM_SYSTEM},
        {"role": "user", "content": task},
        {"role": "assistant", "content": "".join(f"{s}{STEP_SEPARATOR}" for s in steps)},
    ]


class FunctionOutcomeScorer:
    """Wraps ``fn(conversations) -> scalars`` (a reward model with a score head, a ``/classify`` endpoint)."""

    def __init__(self, fn: Callable[[list[list[dict]]], Sequence[float]]) -> None:
        self.fn = fn

    def score(self, task: str, responses: list[str]) -> list[float]:
        convs = [[{"role": "user", "content": task}, {"role": "assistant", "content": r}] for r in responses]
        scores = [float(s) for s in self.fn(convs)]
        if len(scores) != len(responses):
            raise VerifierError(f"reward model returned {len(scores)} scores for {len(responses)} responses")
        return scores


class FunctionStepScorer:
    """Wraps ``fn(prm_messages) -> P(positive) per separator`` (a PRM checkpoint, a ``/pooling`` endpoint)."""

    def __init__(self, fn: Callable[[list[dict]], Sequence[float]]) -> None:
        self.fn = fn

    def step_rewards(self, task: str, steps: list[str]) -> list[float]:
        values = [float(v) for v in self.fn(prm_messages(task, steps))]
        if len(values) != len(steps):
            raise VerifierError(f"process reward model returned {len(values)} rewards for {len(steps)} steps")
        return values


class OutcomeRewardModel:
    """ORM: rank by one scalar per candidate."""

    def __init__(self, scorer: OutcomeScorer) -> None:
        self.scorer = scorer

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        scores = self.scorer.score(task, contexts)
        if len(scores) != len(contexts):
            raise VerifierError(f"reward model returned {len(scores)} scores for {len(contexts)} candidates")
        return by_score(scores)


def split_steps(text: str) -> list[str]:
    """Steps at blank lines (Qwen PRM convention); a text without one is a single step."""
    steps = [s.strip() for s in re.split(r"\n\s*\n", text) if s.strip()]
    return steps or [text.strip()]


def aggregate(rewards: Sequence[float], how: str) -> float:
    if not rewards:
        raise VerifierError("process reward model returned no step rewards")
    if how == "min":
        return min(rewards)
    if how == "prod":
        return math.prod(rewards)
    if how == "mean":
        return sum(rewards) / len(rewards)
    if how == "last":
        return rewards[-1]
    raise ValueError(f"aggregate: expected one of {list(AGGREGATES)}, got {how!r}")


class ProcessRewardModel:
    """PRM: per-step rewards at the separators, aggregated per candidate; ``split=False``: one step (authors' server)."""

    def __init__(self, scorer: StepScorer, how: str = "min", split: bool = True) -> None:
        if how not in AGGREGATES:
            raise ValueError(f"aggregate: expected one of {list(AGGREGATES)}, got {how!r}")
        self.scorer, self.how, self.split = scorer, how, split
        self.last_step_rewards: list[list[float]] = []

    def rank(self, task: str, contexts: list[str]) -> list[int]:
        steps = [split_steps(c) if self.split else [c.strip()] for c in contexts]
        rewards = map_bounded(lambda s: self.scorer.step_rewards(task, s), steps, len(steps))
        self.last_step_rewards = rewards
        return by_score([aggregate(r, self.how) for r in rewards])


def make_verifier(
    kind: str, client: ChatClient, meter: Meter, seed: int = 0, reward_fn: Callable | None = None
) -> Verifier:
    """The verifier of ``kind``; ``reward_fn`` (orm/prm only) is a real reward model's scoring function
    (``experiments.mas_prove.reward_scorers``) in place of the chat-model emulation."""
    kind = ALIASES.get(kind, kind)
    if reward_fn is not None:
        if kind == "orm":
            return OutcomeRewardModel(FunctionOutcomeScorer(reward_fn))
        if kind == "prm":
            return ProcessRewardModel(FunctionStepScorer(reward_fn))
        raise ValueError(f"verifier: a reward model serves only orm/rm and prm, not {kind!r}")
    if kind == "judge_ranking":
        return LLMJudge(client, meter, "ranking", seed)
    if kind == "judge_pointwise":
        return LLMJudge(client, meter, "pointwise", seed)
    if kind == "fare":
        return FAREJudge(client, meter, seed)
    if kind == "orm":
        return OutcomeRewardModel(ChatOutcomeScorer(client, meter, seed))
    if kind == "prm":
        return ProcessRewardModel(ChatStepScorer(client, meter, seed))
    raise ValueError(f"verifier: expected one of {list(KINDS) + list(ALIASES)}, got {kind!r}")
