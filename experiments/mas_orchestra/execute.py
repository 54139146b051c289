"""Run a validated system: topological levels, independent agents of a level in parallel."""
from __future__ import annotations

from dataclasses import dataclass

from experiments.mas_orchestra.spec import REF, OrchestrationError, SystemSpec, validate
from experiments.mas_orchestra.subagents import ALIASES, REGISTRY, Runtime
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import LLMError


@dataclass(frozen=True)
class Execution:
    outputs: dict[str, str]
    levels: list[list[str]]
    final: str


def substitute(value: object, outputs: dict[str, str]) -> object:
    """Replace every ``${id}`` with that agent's output text."""
    if not isinstance(value, str):
        return value
    return REF.sub(lambda m: f"\n[output of {m.group(1)}]\n{outputs[m.group(1)]}\n[end of {m.group(1)}]\n", value)


def execute(spec: SystemSpec, runtime: Runtime, max_parallel: int = 4) -> Execution:
    """Validate then run; a model failure inside an agent is an ``execution`` error naming the agent."""
    levels = validate(spec)
    by_id = {a.id: a for a in spec.agents}
    outputs: dict[str, str] = {}

    def run_one(agent_id: str) -> str:
        agent = by_id[agent_id]
        args = {k: substitute(v, outputs) for k, v in agent.arguments.items()}
        try:
            return REGISTRY[ALIASES.get(agent.name, agent.name)].run(runtime, args)
        except LLMError as exc:
            raise OrchestrationError("execution", f"agent {agent_id!r} ({agent.name}) failed: {exc}") from exc

    for level in levels:
        for agent_id, text in zip(level, map_bounded(run_one, level, max_parallel)):
            outputs[agent_id] = text
    return Execution(outputs, levels, outputs[levels[-1][0]])
