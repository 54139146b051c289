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

Every call's sampling seed is derived from its *position* — (run seed, task
id, framework, fork path, agent, round, occurrence, candidate) — never from a
shared counter, so thread timing cannot reorder seeds and an identical rerun
sends byte-identical requests (100% cache hits at every verification level).
The MAS's calls and the verifier's calls (judge, summariser) are metered
separately (:attr:`MASContext.meter`, :attr:`MASContext.vmeter`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from experiments.mas_prove.context import STRATEGIES, build_contexts
from experiments.mas_prove.prompts import summary_system, summary_user
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

    def add(self, usage: Usage) -> None:
        with self._lock:
            self.usage, self.calls = self.usage + usage, self.calls + 1


def derive_seed(*position: object) -> int:
    """A 31-bit seed that depends only on the call's position (stable across processes and runs)."""
    digest = hashlib.sha256(repr(position).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


def call(
    client: ChatClient, meter: Meter, prompt: str, system: str, temperature: float, max_tokens: int, seed: int
) -> str:
    """One chat turn booked on ``meter``; ``seed`` is sent as given (callers derive it from the position).
    An empty ``system`` sends the user turn alone (the authors' Debate and DyLAN ranker calls have no system turn)."""
    user = {"role": "user", "content": prompt}
    req = ChatRequest(
        messages=({"role": "system", "content": system}, user) if system else (user,),
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        model=getattr(client, "model", ""),
    )
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
    task_id: str = ""
    framework: str = ""
    vmeter: Meter = field(default_factory=Meter)
    steps: list[Step] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    verifications: list[dict] = field(default_factory=list)
    path: tuple = ()
    trace: dict = field(default_factory=dict)
    """Framework-level facts a test or report reads (DyLAN importance, MaAS plan, ADAS archive fitness)."""
    _occurrences: Counter = field(default_factory=Counter)
    _forked: bool = False
    benchmark: str = ""
    """The benchmark's name, for frameworks whose prompts the authors wrote per benchmark (ADAS answer fields)."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level: expected one of {list(LEVELS)}, got {self.level!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.level != "none" and self.verifier is None:
            raise ValueError(f"level={self.level!r} needs a verifier")
        if self.n < 1:
            raise ValueError(f"n: expected >= 1, got {self.n}")

    def position_seed(self, *key: object) -> int:
        return derive_seed(self.seed, self.task_id, self.framework, *key)

    def llm(
        self,
        prompt: str,
        key: tuple,
        system: str = SOLVER,
        temperature: float | None = None,
        meter: Meter | None = None,
    ) -> str:
        """One call seeded by its position ``key`` (see :meth:`position_seed`)."""
        t = self.temperature if temperature is None else temperature
        return call(self.client, meter or self.meter, prompt, system, t, self.max_tokens, self.position_seed(*key))

    def _position(self, name: str, round: int) -> tuple:
        """(fork path, agent, round, how many times this agent already spoke in this round here)."""
        occurrence = self._occurrences[(name, round)]
        self._occurrences[(name, round)] += 1
        return (*self.path, name, round, occurrence)

    def agent(self, name: str, round: int, prompt: str, system: str = SOLVER) -> str:
        """One agent turn; at agent level, best of ``n`` parallel samples by the verifier."""
        key = self._position(name, round)
        if self.level == "agent" and not self._forked:
            outputs = map_bounded(lambda i: self.llm(prompt, (*key, "candidate", i), system), range(self.n), self.n)
            output = outputs[self.select(f"{name}@{round}#{key[-1]}", outputs)]
        else:
            output = self.llm(prompt, key, system)
        self.steps.append(Step(name, round, prompt, output))
        return output

    def unverified(self, name: str, round: int, prompt: str, system: str = SOLVER) -> str:
        """A framework-internal call that the authors never verify and that is no trajectory step (DyLAN's
        ranker): one sample at any level, seeded by its position, booked on the MAS meter."""
        return self.llm(prompt, self._position(name, round), system)

    def fork(self, index: int = 0, round: int = 0) -> "MASContext":
        return MASContext(
            self.client,
            self.task,
            self.verifier,
            self.level,
            self.strategy,
            self.n,
            self.temperature,
            self.max_tokens,
            self.seed,
            self.meter,
            self.task_id,
            self.framework,
            self.vmeter,
            list(self.steps),
            self.stats,
            self.verifications,
            (*self.path, "fork", round, index),
            self.trace,
            Counter(self._occurrences),
            _forked=True,
            benchmark=self.benchmark,
        )

    def iteration(self, round: int, run: Callable[["MASContext"], T], render: Callable[[T], str] = str) -> T:
        """One round/pass; at iteration level, ``n`` forks run it and the verifier keeps the best."""
        if self.level != "iteration" or self._forked:
            return run(self)
        forks = [self.fork(i, round) for i in range(self.n)]
        results = map_bounded(run, forks, self.n)
        best = self.select(f"round {round}", [render(r) for r in results])
        self.steps, self._occurrences = forks[best].steps, forks[best]._occurrences
        return results[best]

    def select(self, where: str, candidates: list[str]) -> int:
        """Index of the verifier's top candidate; any failure -> 0, counted and logged."""
        self.stats["verifications"] += 1
        record: dict = {"where": where, "n": len(candidates)}
        summaries = iter(range(len(candidates) + 1))
        try:
            contexts = build_contexts(
                self.strategy,
                self.task,
                self.steps,
                candidates,
                lambda text: self.llm(
                    summary_user(text),
                    ("summary", *self.path, where, next(summaries)),
                    summary_system(),
                    0.0,
                    self.vmeter,
                ),
            )
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
