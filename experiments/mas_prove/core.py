"""The one abstraction every framework is written on: agents and iterations on a context.

A framework calls ``ctx.agent(...)`` for each agent turn and wraps each round
or pass in ``ctx.iteration(...)``.  The context decides whether to verify:

* ``level="agent"``: every agent turn samples ``n`` candidates in parallel,
  the verifier ranks them, the best is kept (greedy, no backtracking);
* ``level="iteration"``: every round runs ``n`` times on forked contexts and
  the best fork's steps are kept;
* ``level="none"``: plain execution (the baseline).

A verifier failure falls back to candidate 0 *visibly*: it is counted in
:attr:`MASContext.stats` and logged in :attr:`MASContext.verifications`.
"""
from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from experiments.mas_prove.context import STRATEGIES, build_contexts
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import ChatClient, ChatRequest, Usage

T = TypeVar("T")
LEVELS = ("none", "agent", "iteration")
SOLVER = "You are an expert problem solver. Reason step by step; put the final answer in \\boxed{}."


class VerifierError(RuntimeError):
    """The verifier could not produce a usable ranking (bad format, model error)."""


@dataclass
class Step:
    agent: str
    round: int
    prompt: str
    output: str


class Meter:
    """Counts tokens and calls across all forks and threads of one problem."""

    def __init__(self) -> None:
        self.usage, self.calls, self._lock = Usage(), 0, threading.Lock()
        self._seq = itertools.count()

    def add(self, usage: Usage) -> None:
        with self._lock:
            self.usage, self.calls = self.usage + usage, self.calls + 1

    def next_seed(self) -> int:
        with self._lock:
            return next(self._seq)


def call(client: ChatClient, meter: Meter, prompt: str, system: str, temperature: float, max_tokens: int,
         seed: int) -> str:
    """One chat turn through the shared meter; each call gets a distinct seed (cache-friendly sampling)."""
    req = ChatRequest(messages=({"role": "system", "content": system}, {"role": "user", "content": prompt}),
                      temperature=temperature, max_tokens=max_tokens, seed=seed * 100_000 + meter.next_seed(),
                      model=getattr(client, "model", ""))
    resp = client.complete(req)
    meter.add(resp.usage)
    return resp.text


@dataclass
class MASContext:
    client: ChatClient
    task: str
    verifier: Any = None
    level: Literal["none", "agent", "iteration"] = "none"
    strategy: str = "raw"
    n: int = 3
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0
    meter: Meter = field(default_factory=Meter)
    steps: list[Step] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    verifications: list[dict] = field(default_factory=list)
    _forked: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level: expected one of {list(LEVELS)}, got {self.level!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.level != "none" and self.verifier is None:
            raise ValueError(f"level={self.level!r} needs a verifier")
        if self.n < 1:
            raise ValueError(f"n: expected >= 1, got {self.n}")

    def llm(self, prompt: str, system: str = SOLVER, temperature: float | None = None) -> str:
        t = self.temperature if temperature is None else temperature
        return call(self.client, self.meter, prompt, system, t, self.max_tokens, self.seed)

    def agent(self, name: str, round: int, prompt: str, system: str = SOLVER) -> str:
        """One agent turn; at agent level, best of ``n`` parallel samples by the verifier."""
        if self.level == "agent" and not self._forked:
            outputs = map_bounded(lambda _: self.llm(prompt, system), range(self.n), self.n)
            output = outputs[self.select(f"{name}@{round}", outputs)]
        else:
            output = self.llm(prompt, system)
        self.steps.append(Step(name, round, prompt, output))
        return output

    def fork(self) -> "MASContext":
        return MASContext(self.client, self.task, self.verifier, self.level, self.strategy, self.n,
                          self.temperature, self.max_tokens, self.seed, self.meter, list(self.steps),
                          self.stats, self.verifications, _forked=True)

    def iteration(self, round: int, run: Callable[["MASContext"], T], render: Callable[[T], str] = str) -> T:
        """One round/pass; at iteration level, ``n`` forks run it and the verifier keeps the best."""
        if self.level != "iteration" or self._forked:
            return run(self)
        forks = [self.fork() for _ in range(self.n)]
        results = map_bounded(run, forks, self.n)
        best = self.select(f"round {round}", [render(r) for r in results])
        self.steps = forks[best].steps
        return results[best]

    def select(self, where: str, candidates: list[str]) -> int:
        """Index of the verifier's top candidate; any failure -> 0, counted and logged."""
        self.stats["verifications"] += 1
        record: dict = {"where": where, "n": len(candidates)}
        try:
            contexts = build_contexts(self.strategy, self.task, self.steps, candidates,
                                      lambda text: self.llm(text, SUMMARIZER, temperature=0.0))
            ranking = list(self.verifier.rank(self.task, contexts))
            if sorted(ranking) != list(range(len(candidates))):
                raise VerifierError(f"ranking {ranking} is not a permutation of 0..{len(candidates) - 1}")
            record["ranking"] = ranking
            choice = ranking[0]
        except Exception as exc:  # any verifier failure: fall back visibly, never silently
            self.stats["fallbacks"] += 1
            self.stats[f"fallback:{type(exc).__name__}"] += 1
            record["fallback"] = f"{type(exc).__name__}: {exc}"
            choice = 0
        record["chosen"] = choice
        self.verifications.append(record)
        return choice


SUMMARIZER = ("Summarise the reasoning so far for a reviewer: keep every claimed intermediate result and the "
              "current answer, drop repetition. Reply with the summary only.")
