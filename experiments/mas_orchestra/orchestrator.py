"""Prompted orchestration: one model output describes the whole multi-agent system.

The orchestrator sees the task and the sub-agent catalogue, writes agent and
edge blocks (or tool calls), and the system is parsed, validated and executed.
Every failure is caught here and returned as a scored outcome with its kind
and message: a bad design costs reward, it never crashes a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from experiments.mas_orchestra.execute import execute
from experiments.mas_orchestra.spec import OrchestrationError, SystemSpec, parse_text, parse_tool_calls, tool_schemas
from experiments.mas_orchestra.subagents import REGISTRY, Runtime, derive_seed
from jaxlab.llm.types import ChatRequest, LLMError

FORMAT = """Solve the question by creating one or more agents and connecting them into a valid computational graph \
whose single final agent produces the answer. Write ONE reply with these channels:
<thinking>why these agents, how they connect, which agent gives the final answer</thinking>
<agent>
  <agent_id>unique id: letters, digits, _ (e.g. A1, Refine_1)</agent_id>
  <agent_name>exactly one of: {names}</agent_name>
  <agent_description>what this agent does</agent_description>
  <required_arguments>
    <agent_input>the sub-task; write ${{other_id}} to use another agent's output; leave empty ("") to give the agent \
the original question</agent_input>
    <debate_roles>["Role 1", "Role 2"]  (DebateAgent only: two or more roles)</debate_roles>
  </required_arguments>
</agent>
(... more <agent> blocks ...)
<edge>
  <from>source id</from><to>target id</to>
</edge>
Rules: exactly one <edge> block; an edge X->Y exists if and only if Y's agent_input references ${{X}}; no cycles or \
self-loops; every agent connected; exactly one agent without outgoing edges (the final answer). A single agent needs \
no edges. A non-empty agent_input is run with the original question prepended.

Available agents:
{catalogue}"""


@dataclass
class Outcome:
    success: bool
    final: str = ""
    error_kind: str = ""
    error: str = ""
    spec: SystemSpec | None = None
    outputs: dict = field(default_factory=dict)
    orchestrator_text: str = ""
    inputs: dict = field(default_factory=dict)


def catalogue() -> str:
    return "\n".join(
        f"- {a.name}: {a.description}; arguments {json.dumps(a.parameters['properties'])}" for a in REGISTRY.values()
    )


def orchestrator_request(
    task: str, use_tools: bool, temperature: float, max_tokens: int, seed: int, model: str = ""
) -> ChatRequest:
    system = FORMAT.format(names=", ".join(REGISTRY), catalogue=catalogue())
    if use_tools:
        system += "\n\nYou may instead call one tool per agent (and `connect` for edges)."
    return ChatRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": f"Task:\n{task}"}),
        tools=tuple(tool_schemas()) if use_tools else (),
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        model=model,
    )


def run_orchestrated(
    task: str,
    runtime: Runtime,
    use_tools: bool = False,
    temperature: float = 0.0,
    max_tokens: int = 2048,
    max_parallel: int = 4,
) -> Outcome:
    """Ask the orchestrator for a system, then execute it; all failures become an :class:`Outcome`."""
    req = orchestrator_request(
        task,
        use_tools,
        temperature,
        max_tokens,
        derive_seed(runtime.seed, runtime.problem_id, "orchestrator"),
        getattr(runtime.client, "model", ""),
    )
    try:
        resp = runtime.client.complete(req)
    except LLMError as exc:
        return Outcome(False, error_kind="orchestrator_call", error=str(exc))
    runtime.book(resp.usage)
    text = resp.text
    try:
        spec = parse_tool_calls(resp.tool_calls) if resp.tool_calls else parse_text(text)
        result = execute(spec, runtime, task, max_parallel)
    except OrchestrationError as exc:
        return Outcome(False, error_kind=exc.kind, error=str(exc), orchestrator_text=text, spec=locals().get("spec"))
    return Outcome(
        True, final=result.final, spec=spec, outputs=result.outputs, orchestrator_text=text, inputs=result.inputs
    )
