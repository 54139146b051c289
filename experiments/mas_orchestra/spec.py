"""The orchestrator's output format, parsed and validated into an executable DAG.

The text format is the seed's (MAS-Orchestra ``harmony_medium``): ``<agent>``
blocks with ``agent_id``, ``agent_name``, ``agent_description`` and
``required_arguments`` holding ``<agent_input>`` (``<task>`` accepted as an
alias; empty or ``""`` = the original question) and, for DebateAgent,
``<debate_roles>`` (a Python/JSON list of at least two role names).  Inputs
reference other agents' outputs as ``${id}``; one ``<edge>`` block of
``<from>``/``<to>`` pairs.  Other argument tags are ignored, as the seed's
parser ignores them (kept in :attr:`AgentSpec.ignored`).  OpenAI-style tool
calls (one call per agent, optional ``connect`` call with edges) parse into
the same spec.
Every defect is an :class:`OrchestrationError` with a ``kind`` so the reward
can score it as a failed execution with a readable message.

As the seed's ``harmony_parser/medium.py``: tags match case-insensitively, a
missing ``<agent_description>`` is empty and a missing ``<agent_input>`` is the
original question.  Stricter than that parser, as the seed *prompt* demands
(its "Final Checklist"): an edge without a matching ``${id}`` (and the
reverse), and an edge listed twice, are rejected; the seed's parser lets both
through.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from experiments.mas_orchestra.subagents import ALIASES, REGISTRY
from jaxlab.llm.types import LLMError, ToolCall

REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")
_AGENT = re.compile(r"<agent>(.*?)</agent>", re.DOTALL | re.IGNORECASE)
_EDGE = re.compile(r"<edge>(.*?)</edge>", re.DOTALL | re.IGNORECASE)
_PAIR = re.compile(r"<from>\s*(.*?)\s*</from>\s*<to>\s*(.*?)\s*</to>", re.DOTALL | re.IGNORECASE)
_ARG = re.compile(r"<([A-Za-z_][\w\-]*)>(.*?)</\1>", re.DOTALL)
CONNECT_TOOL = {
    "type": "function",
    "function": {
        "name": "connect",
        "description": "declare directed edges: output of `from` feeds `to`",
        "parameters": {
            "type": "object",
            "required": ["edges"],
            "properties": {
                "edges": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["from", "to"],
                        "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                    },
                }
            },
        },
    },
}


class OrchestrationError(ValueError):
    KINDS = (
        "parse",
        "unknown_agent",
        "duplicate_id",
        "bad_arguments",
        "unknown_reference",
        "cycle",
        "sink",
        "edge_mismatch",
        "duplicate_edge",
        "execution",
    )

    def __init__(self, kind: str, message: str) -> None:
        assert kind in self.KINDS, kind
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass(frozen=True)
class AgentSpec:
    id: str
    name: str
    description: str
    arguments: dict
    ignored: dict = field(default_factory=dict, compare=False)

    def references(self) -> set[str]:
        return {r for v in self.arguments.values() if isinstance(v, str) for r in REF.findall(v)}


@dataclass(frozen=True)
class SystemSpec:
    agents: tuple[AgentSpec, ...]
    edges: tuple[tuple[str, str], ...]
    thinking: str = ""


def _field(block: str, tag: str, required: bool = True) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", block, re.DOTALL | re.IGNORECASE)
    if m is None:
        if not required:  # the seed's extract_xml gives "" for a missing tag
            return ""
        raise OrchestrationError("parse", f"agent block is missing <{tag}>: {block.strip()[:120]!r}")
    return m.group(1).strip()


def _roles(value: object, agent_id: str) -> object:
    """``debate_roles`` as a list: Python or JSON list syntax (as the seed's parser reads it)."""
    if not isinstance(value, str):
        return value
    for loader in (ast.literal_eval, json.loads):
        try:
            return loader(value.strip())
        except (ValueError, SyntaxError):
            continue
    raise OrchestrationError("bad_arguments", f"agent {agent_id!r}: debate_roles is not a list: {value!r}")


def _arguments(raw: dict, agent_id: str, text_format: bool = False) -> tuple[dict, dict]:
    """(arguments the seed reads, ignored extras): ``task`` -> ``agent_input``, ``""`` -> empty input."""
    raw = dict(raw)
    if "agent_input" not in raw and "task" in raw:
        raw["agent_input"] = raw.pop("task")
    if "agent_input" not in raw and text_format:  # the seed's parser: a missing <agent_input> is the question
        raw["agent_input"] = ""
    args, ignored = {}, {}
    for k, v in raw.items():
        if k == "agent_input":
            text = v.strip() if isinstance(v, str) else v
            args[k] = "" if text in ('""', "''") else text
        elif k == "debate_roles":
            args[k] = _roles(v, agent_id)
        else:
            ignored[k] = v
    return args, ignored


def parse_text(text: str) -> SystemSpec:
    """Parse the XML-ish system description an orchestrator writes in one output."""
    blocks = _AGENT.findall(text)
    if not blocks:
        raise OrchestrationError("parse", "no <agent>...</agent> block found in the orchestrator output")
    agents = []
    for block in blocks:
        args_block = _field(block, "required_arguments")
        agent_id = _field(block, "agent_id")
        raw = {k.lower(): v for k, v in _ARG.findall(args_block)}
        args, ignored = _arguments(raw, agent_id, text_format=True)
        agents.append(
            AgentSpec(agent_id, _field(block, "agent_name"), _field(block, "agent_description", False), args, ignored)
        )
    edges = tuple((a, b) for e in _EDGE.findall(text) for a, b in _PAIR.findall(e))
    thinking = re.search(r"<thinking>(.*?)</thinking>", text, re.DOTALL)
    return SystemSpec(tuple(agents), edges, thinking.group(1).strip() if thinking else "")


def parse_tool_calls(calls: Sequence[ToolCall]) -> SystemSpec:
    """One tool call per agent (name = sub-agent); edges from ``connect`` calls or, if none, from ``${id}``s."""
    agents, edges, connected = [], [], False
    for i, call in enumerate(calls):
        try:
            args = call.parsed_arguments()
        except LLMError as exc:
            raise OrchestrationError("parse", f"tool call {i}: {exc}") from exc
        if call.name == "connect":
            connected = True
            for e in args.get("edges", []):
                if not isinstance(e, dict) or not {"from", "to"} <= set(e):
                    raise OrchestrationError("parse", f"connect edge {e!r}: expected {{'from', 'to'}}")
                edges.append((str(e["from"]), str(e["to"])))
            continue
        if "agent_id" not in args:
            raise OrchestrationError("parse", f"tool call {i} ({call.name}): missing 'agent_id'")
        agent_id, desc = str(args.pop("agent_id")), str(args.pop("agent_description", ""))
        agents.append(AgentSpec(agent_id, call.name, desc, *_arguments(args, agent_id)))
    if not agents:
        raise OrchestrationError("parse", "tool calls define no agent")
    if not connected:
        edges = [(r, a.id) for a in agents for r in sorted(a.references())]
    return SystemSpec(tuple(agents), tuple(edges))


def validate(spec: SystemSpec) -> list[list[str]]:
    """Check the spec and return its topological levels (agents in a level are independent)."""
    ids = [a.id for a in spec.agents]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise OrchestrationError("duplicate_id", f"agent ids {dup} are used more than once")
    for a in spec.agents:
        canonical = ALIASES.get(a.name, a.name)
        if canonical not in REGISTRY:
            raise OrchestrationError(
                "unknown_agent", f"agent {a.id!r} uses {a.name!r}; expected one of {sorted(REGISTRY)}"
            )
        missing = [k for k in REGISTRY[canonical].parameters["required"] if k not in a.arguments]
        if missing:
            raise OrchestrationError("bad_arguments", f"agent {a.id!r} ({canonical}): missing {missing}")
        if not isinstance(a.arguments["agent_input"], str):
            raise OrchestrationError(
                "bad_arguments", f"agent {a.id!r}: agent_input must be text, got {a.arguments['agent_input']!r}"
            )
        roles = a.arguments.get("debate_roles")
        if canonical == "DebateAgent" and (
            not isinstance(roles, list)
            or len(roles) < 2
            or any(not isinstance(r, str) or len(r.strip()) < 2 for r in roles)
        ):
            raise OrchestrationError(
                "bad_arguments",
                f"agent {a.id!r}: DebateAgent needs debate_roles, a list of at least two role names, got {roles!r}",
            )
        if not re.fullmatch(r"[A-Za-z0-9_]+", a.id):
            raise OrchestrationError("bad_arguments", f"agent id {a.id!r}: only letters, digits and _ are allowed")
        unknown = sorted(a.references() - set(ids))
        if unknown:
            raise OrchestrationError("unknown_reference", f"agent {a.id!r} references unknown ids {unknown}")
    repeated = sorted({e for e in spec.edges if spec.edges.count(e) > 1})
    if repeated:  # the seed prompt's checklist item 7 ("No Duplicates in Edges")
        raise OrchestrationError("duplicate_edge", f"edges {repeated} are listed more than once")
    for src, dst in spec.edges:
        if src not in ids or dst not in ids:
            raise OrchestrationError("unknown_reference", f"edge {src}->{dst} names an unknown agent id")
    refs = {(r, a.id) for a in spec.agents for r in a.references()}
    edges = set(spec.edges)
    if refs != edges:
        raise OrchestrationError(
            "edge_mismatch",
            f"edges without a ${{id}} reference: {sorted(edges - refs)}; "
            f"references without an edge: {sorted(refs - edges)}",
        )
    indeg = {i: 0 for i in ids}
    for _, dst in edges:
        indeg[dst] += 1
    levels, frontier, seen = [], sorted(i for i in ids if indeg[i] == 0), 0
    while frontier:
        levels.append(frontier)
        seen += len(frontier)
        nxt = []
        for src in frontier:
            for s, dst in sorted(edges):
                if s == src:
                    indeg[dst] -= 1
                    if indeg[dst] == 0:
                        nxt.append(dst)
        frontier = sorted(nxt)
    if seen != len(ids):
        raise OrchestrationError("cycle", f"agents {sorted(i for i in ids if indeg[i] > 0)} form a cycle")
    sinks = sorted(i for i in ids if not any(s == i for s, _ in edges))
    if len(sinks) != 1:
        raise OrchestrationError("sink", f"expected exactly one final agent (no outgoing edge), found {sinks}")
    return levels


def tool_schemas() -> list[dict]:
    return [a.tool_schema() for a in REGISTRY.values()] + [CONNECT_TOOL]


def dumps(spec: SystemSpec) -> str:
    return json.dumps({"agents": [a.__dict__ for a in spec.agents], "edges": spec.edges})
