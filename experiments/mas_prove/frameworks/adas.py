"""ADAS Meta Agent Search (Hu et al.) as released and as MAS-ProVe runs it (``mas/adas/_aime/search.py``).

:meth:`ADAS.search` is the authors' loop:

1. every archive agent without a fitness (the seven seeds) is evaluated on the validation tasks; fitness is the
   bootstrap median and 95% interval of its accuracy (``bootstrap_confidence_interval``);
2. per generation the meta agent sees the archive as JSON and proposes ``{"thought", "name", "code"}``; then, in
   the same conversation, two Reflexion rounds refine it (round 1 shows the previous generation's agent);
3. the proposal is evaluated; a definition error or an all-zero accuracy is sent back ("Error during
   evaluation: ...") and the meta agent answers with a new proposal, at most ``debug_max`` evaluations;
4. the evaluated proposal is appended with its fitness and generation (``reflection`` / ``debug_thought``
   dropped).  A meta reply that is no JSON object skips the generation, as the authors' ``except`` does.

One difference, on purpose: when the last debug attempt still scores zero, the authors append the *regenerated*
(never evaluated) proposal with the previous proposal's accuracy; here the archive keeps the proposal that
accuracy belongs to.  Agents run in :mod:`jaxlab.sandbox` (:mod:`.adas_sandbox`); a task whose agent raises
scores 0.  :meth:`ADAS.solve` runs the fittest agent (ties: the earlier) on the test task; without a search,
the first seed.  The meta agent's calls are never verified; the agents' calls are (``ctx.agent``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.adas_prompts import (
    ALL_ZERO,
    DEBUG,
    META_SYSTEM,
    SEEDS,
    answer_desc,
    meta_prompt,
    reflexion_prompts,
)
from experiments.mas_prove.frameworks.adas_sandbox import run_agent
from jaxlab.llm.types import ChatRequest


def bootstrap(acc: Sequence[float], samples: int = 100_000, seed: int = 0) -> dict:
    """Bootstrap of the mean accuracy: median and 95% interval (the authors' fitness, 100k resamples)."""
    data = np.asarray(acc, float)
    if data.size == 0:
        raise ValueError("bootstrap: no accuracy values")
    means = np.random.default_rng(seed).choice(data, size=(samples, data.size), replace=True).mean(axis=1)
    return {
        "median": float(np.median(means)),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "n": int(data.size),
    }


def fitness_text(f: dict) -> str:
    """The fitness string the meta agent reads, in the authors' format."""
    return (
        f"95% Bootstrap Confidence Interval: ({f['low'] * 100:.1f}%, {f['high'] * 100:.1f}%), "
        f"Median: {f['median'] * 100:.1f}%"
    )


@dataclass
class Agent:
    name: str
    thought: str
    code: str
    generation: int | str = "initial"
    fitness: dict = field(default_factory=dict)
    debug_rounds: int = 0

    def shown(self) -> dict:
        """The archive entry as the meta agent sees it (``json.dumps`` of the authors' solution dict)."""
        out: dict = {"thought": self.thought, "name": self.name, "code": self.code}
        if self.fitness:
            out["fitness"] = fitness_text(self.fitness)
        out["generation"] = self.generation
        return out


def seed_archive() -> list[Agent]:
    return [Agent(name, thought, code.strip() + "\n") for name, (thought, code) in SEEDS.items()]


class MetaError(ValueError):
    """The meta agent's reply is not a JSON object."""


class AgentError(ValueError):
    """The proposal cannot be scored (no code, no single callable) or scores zero on every task."""


def parse_json(text: str) -> dict:
    try:
        data = json.loads(text[text.index("{") : text.rindex("}") + 1])
    except ValueError as exc:
        raise MetaError(f"meta agent reply is not a JSON object: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise MetaError(f"meta agent reply is not a JSON object: {text[:200]!r}")
    return data


class ADAS:
    name, family = "adas", "code"

    def __init__(
        self,
        generations: int = 1,
        debug_max: int = 3,
        benchmark: str = "",
        meta_temperature: float = 0.8,
        meta_max_tokens: int = 4096,
    ) -> None:
        """``meta_max_tokens``: the meta agent's own reply budget (a whole agent as JSON does not fit the agents'
        ``max_tokens``; the authors set none)."""
        self.generations, self.debug_max, self.benchmark = generations, debug_max, benchmark
        self.meta_temperature, self.meta_max_tokens = meta_temperature, meta_max_tokens
        self.archive = seed_archive()
        self.searched = False
        self.log: list[dict] = []
        """One record per generation: each evaluation's accuracy or error, skips, the conversation length."""

    def best(self) -> Agent:
        scored = [a for a in self.archive if a.fitness]
        return max(scored, key=lambda a: a.fitness["median"]) if scored else self.archive[0]

    def _accuracy(
        self,
        code: str,
        make_ctx: Callable[[object, str], MASContext],
        tasks: Sequence,
        grade: Callable[[object, str], bool],
        tag: str,
    ) -> list[float]:
        acc = []
        for task in tasks:
            run = run_agent(make_ctx(task, tag), code, answer_desc(self.benchmark))
            if run.status == "definition":
                raise AgentError(run.error)
            acc.append(float(run.status == "ok" and grade(task, run.answer)))
        return acc

    def _meta(self, ctx: MASContext, messages: list[dict], key: tuple) -> dict:
        req = ChatRequest(
            messages=tuple(messages),
            temperature=self.meta_temperature,
            max_tokens=self.meta_max_tokens,
            seed=ctx.position_seed("meta_agent", *key),
            model=getattr(ctx.client, "model", ""),
        )
        resp = ctx.client.complete(req)
        ctx.meter.add(resp.usage)
        return parse_json(resp.text)

    def search(
        self,
        make_ctx: Callable[[object, str], MASContext],
        tasks: Sequence,
        grade: Callable[[object, str], bool],
        meta_ctx: MASContext,
    ) -> list[Agent]:
        """Evaluate the seeds on ``tasks`` (the validation split), then run ``generations`` generations.

        ``make_ctx(task, tag)`` gives a fresh context per validation run; ``meta_ctx`` carries the meta agent.
        """
        for agent in self.archive:
            if not agent.fitness:
                try:
                    agent.fitness = bootstrap(self._accuracy(agent.code, make_ctx, tasks, grade, f"adas:{agent.name}"))
                except AgentError as exc:  # the authors skip a seed that cannot be evaluated
                    self.log.append({"seed": agent.name, "error": str(exc)})
        start = sum(isinstance(a.generation, int) for a in self.archive)
        for n in range(start, start + self.generations):
            self.log.append(self._generation(n, make_ctx, tasks, grade, meta_ctx))
        self.searched = True
        return self.archive

    def _generation(self, n: int, make_ctx, tasks, grade, meta_ctx: MASContext) -> dict:
        record: dict = {"generation": n + 1, "evaluations": []}
        messages = [
            {"role": "system", "content": META_SYSTEM},
            {"role": "user", "content": meta_prompt([a.shown() for a in self.archive], self.benchmark)},
        ]
        r1, r2 = reflexion_prompts(self.archive[-1].shown() if n > 0 else None)
        try:
            solution = self._meta(meta_ctx, messages, (n, "propose"))
            for k, follow in enumerate((r1, r2)):
                messages += [{"role": "assistant", "content": str(solution)}, {"role": "user", "content": follow}]
                solution = self._meta(meta_ctx, messages, (n, "reflexion", k + 1))
        except MetaError as exc:
            record["skipped"] = str(exc)
            return record
        evaluated = None
        for attempt in range(self.debug_max):
            entry: dict = {"attempt": attempt}
            record["evaluations"].append(entry)
            try:
                if not isinstance(solution.get("code"), str):
                    raise AgentError(repr("code"))  # the authors' KeyError on next_solution["code"]
                acc = self._accuracy(solution["code"], make_ctx, tasks, grade, f"adas:g{n + 1}:{attempt}")
                evaluated, entry["accuracy"] = (solution, acc, attempt), float(np.mean(acc))
                if entry["accuracy"] < 0.01:
                    raise AgentError(ALL_ZERO)
                break
            except AgentError as exc:
                entry["error"] = str(exc)
                messages += [
                    {"role": "assistant", "content": str(solution)},
                    {"role": "user", "content": DEBUG.format(error=exc)},
                ]
                try:
                    solution = self._meta(meta_ctx, messages, (n, "debug", attempt))
                except MetaError as inner:
                    record["debug_skipped"] = str(inner)
                    break
        record["messages"] = len(messages)
        if evaluated is None:
            record["skipped"] = "no valid accuracy after retries"
            return record
        sol, acc, attempt = evaluated
        self.archive.append(
            Agent(str(sol.get("name", "")), str(sol.get("thought", "")), sol["code"], n + 1, bootstrap(acc), attempt)
        )
        return record

    def solve(self, ctx: MASContext) -> str:
        agent = self.best()
        ctx.trace["adas"] = {
            "agent": agent.name,
            "fitness": agent.fitness,
            "searched": self.searched,
            "archive": [(a.name, a.fitness.get("median")) for a in self.archive],
            "log": self.log,
        }
        desc = answer_desc(self.benchmark or ctx.benchmark)
        run = ctx.iteration(0, lambda c: run_agent(c, agent.code, desc), lambda r: r.answer or r.error)
        return run.answer if run.status == "ok" else ""
