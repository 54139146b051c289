"""MAS-Orchestra's reward for GRPO: the completion is a whole multi-agent system, executed and scored.

A completion is the orchestrator's reply in the seed's schema (``<agent>`` blocks with
``agent_id`` / ``agent_name`` / ``required_arguments``, one ``<edge>`` block;
``experiments.mas_orchestra.spec``). It is parsed, validated into a DAG and run with the frozen
sub-agents through a pluggable :class:`~jaxlab.llm.types.ChatClient` (a served model, SmolLM2 in
process, or a scripted client in tests); the final agent's answer is scored against the MASBench
gold answers. The reward is the seed's ``0.1 x executes + 0.9 x correct``
(``experiments.mas_orchestra.reward``). Each completion's stage (``parse``, ``validate``,
``execute``, ``ok``) and error kind are counted into the step log, so the format/validity rate of
the orchestrator's calls is visible per step. Systems run concurrently (a bounded pool): one slow
system never serialises the batch.

``mas_format`` is an optional shaping reward for a policy that starts unable to write the schema
(SmolLM2 writes 0 of 4 parseable systems): 0.25 for an ``<agent>`` block, 0.5 when the reply
parses, 1.0 when the system validates. The seed does not use it; a config adds it with a weight.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from experiments.mas_orchestra.execute import execute
from experiments.mas_orchestra.reward import orchestration_reward
from experiments.mas_orchestra.spec import OrchestrationError, parse_text, validate
from experiments.mas_orchestra.subagents import Runtime, Settings
from experiments.masbench.scorer import score
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import ChatClient

STAGES = ("no_agent", "parse", "validate", "execute", "ok")
"""How far a completion got: no ``<agent>`` block, failed to parse, failed validation, failed while running,
executed (then scored)."""


@dataclass(frozen=True)
class SystemResult:
    stage: str
    error_kind: str = ""
    error: str = ""
    final: str = ""
    correct: bool = False

    @property
    def success(self) -> bool:
        return self.stage == "ok"


def run_system(
    text: str, question: str, answers: Sequence[str], runtime: Runtime, max_parallel: int = 4
) -> SystemResult:
    """Parse, validate, execute and score one orchestrator reply; every failure is a result, never a raise."""
    if "<agent>" not in text:
        return SystemResult("no_agent", "parse", "no <agent> block")
    try:
        spec = parse_text(text)
    except OrchestrationError as exc:
        return SystemResult("parse", exc.kind, str(exc))
    try:
        validate(spec)
    except OrchestrationError as exc:
        return SystemResult("validate", exc.kind, str(exc))
    try:
        result = execute(spec, runtime, question, max_parallel)
    except OrchestrationError as exc:
        return SystemResult("execute", exc.kind, str(exc))
    return SystemResult("ok", final=result.final, correct=bool(score(result.final, list(answers))["correct"]))


def format_score(text: str) -> float:
    """0 / 0.25 (an agent block) / 0.5 (parses) / 1.0 (validates): the shaping ladder of ``mas_format``."""
    if "<agent>" not in text:
        return 0.0
    try:
        spec = parse_text(text)
    except OrchestrationError:
        return 0.25
    try:
        validate(spec)
    except OrchestrationError:
        return 0.5
    return 1.0


@dataclass
class OrchestraRewards:
    """The reward functions bound to a sub-agent client (``functions()`` goes to ``GRPOLearner(reward_fns=)``)."""

    client: ChatClient
    settings: Settings = field(default_factory=Settings)
    max_tokens: int = 256
    seed: int = 0
    exec_weight: float = 0.1
    answer_weight: float = 0.9
    max_systems: int = 4
    """Systems executed at once (each runs its own agents, up to ``max_parallel`` of a level at once)."""
    max_parallel: int = 2
    last: list[SystemResult] = field(default_factory=list)
    """The latest batch's results (the runner's samples log and evaluation read them)."""

    def results(
        self,
        completions: Sequence[str],
        question: Sequence[str],
        answers: Sequence[Sequence[str]],
        problem_id: Sequence[str],
    ) -> list[SystemResult]:
        def one(i: int) -> SystemResult:
            rt = Runtime(self.client, self.settings, self.max_tokens, self.seed, f"{problem_id[i]}#{i}")
            return run_system(completions[i], question[i], answers[i], rt, self.max_parallel)

        return list(map_bounded(one, list(range(len(completions))), self.max_systems))

    def reward(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        question: Sequence[str],
        answers: Sequence[Sequence[str]],
        problem_id: Sequence[str],
        **_: Any,
    ) -> tuple[list[float], dict]:
        """``exec_weight x executes + answer_weight x correct`` per completion, with stage / error counts."""
        self.last = self.results(completions, question, answers, problem_id)
        values = [orchestration_reward(r.success, r.correct, self.exec_weight, self.answer_weight) for r in self.last]
        return values, summarize(self.last)

    def functions(self) -> dict[str, Any]:
        return {"mas_orchestra": self.reward, "mas_format": mas_format}


def mas_format(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
    return [format_score(c) for c in completions]


ORCHESTRA_REWARDS = ("mas_orchestra", "mas_format")


def summarize(results: Sequence[SystemResult]) -> dict[str, float]:
    """Rates a step log (and the before/after report) shows: how far systems got, why they failed."""
    n = max(len(results), 1)
    stages = Counter(r.stage for r in results)
    out = {f"stage/{s}": stages.get(s, 0) / n for s in STAGES}
    out["parse_rate"] = sum(r.stage in ("validate", "execute", "ok") for r in results) / n
    out["valid_rate"] = sum(r.stage in ("execute", "ok") for r in results) / n
    out["execution_rate"] = stages.get("ok", 0) / n
    out["accuracy"] = sum(r.correct for r in results) / n
    for kind, count in Counter(r.error_kind for r in results if r.error_kind).items():
        out[f"error/{kind}"] = count / n
    return out
