"""Run a validated system: topological levels, independent agents of a level in parallel.

Each agent's input follows the seed's parser: ``${id}`` references are replaced
by that agent's output; an empty input means the original question; a
non-empty one is prefixed with the original question ("Original task: ...;
Current Sub-task: ..."), so no sub-agent ever loses sight of what is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.mas_orchestra.spec import REF, OrchestrationError, SystemSpec, validate
from experiments.mas_orchestra.subagents import ALIASES, REGISTRY, Runtime
from jaxlab.llm.concurrency import map_bounded
from jaxlab.llm.types import LLMError

# harmony_parser/medium.py, generate_single_agent_code (verbatim, its "currentsub-task" included).
SINGLE_AGENT_GUIDANCE = (
    "Please solve the currentsub-task first. If its result directly answers the original question, "
    "output that as the final answer. Otherwise, use the sub-task result as guidance to complete "
    "the original question and output the final answer to the original question."
)


@dataclass(frozen=True)
class Execution:
    outputs: dict[str, str]
    levels: list[list[str]]
    final: str
    inputs: dict[str, str]


def substitute(value: object, outputs: dict[str, str]) -> object:
    """Replace every ``${id}`` with that agent's output text (verbatim, as the seed does)."""
    if not isinstance(value, str):
        return value
    return REF.sub(lambda m: outputs[m.group(1)], value)


def compose_task(question: str, agent_input: str, single_agent: bool) -> str:
    """The text a sub-agent is asked to solve."""
    if not agent_input.strip():
        return question
    text = f"Original task: {question}; Current Sub-task: {agent_input}."
    return f"{text} {SINGLE_AGENT_GUIDANCE}" if single_agent else text


def execute(spec: SystemSpec, runtime: Runtime, question: str, max_parallel: int = 4) -> Execution:
    """Validate then run; a model failure inside an agent is an ``execution`` error naming the agent."""
    levels = validate(spec)
    by_id = {a.id: a for a in spec.agents}
    single = len(spec.agents) == 1 and not spec.edges
    outputs: dict[str, str] = {}
    inputs: dict[str, str] = {}

    def run_one(agent_id: str) -> str:
        agent = by_id[agent_id]
        args = {k: substitute(v, outputs) for k, v in agent.arguments.items()}
        task = compose_task(question, args["agent_input"], single)
        inputs[agent_id] = task
        try:
            return REGISTRY[ALIASES.get(agent.name, agent.name)].run(runtime, agent_id, task, args)
        except LLMError as exc:
            raise OrchestrationError("execution", f"agent {agent_id!r} ({agent.name}) failed: {exc}") from exc

    for level in levels:
        for agent_id, text in zip(level, map_bounded(run_one, level, max_parallel)):
            outputs[agent_id] = text
    return Execution(outputs, levels, outputs[levels[-1][0]], inputs)
