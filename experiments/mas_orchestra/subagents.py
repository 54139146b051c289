"""The frozen sub-agents the orchestrator composes: CoT, SC, Debate, Reflexion, Search.

Each is a plain function ``(runtime, arguments) -> text`` plus a JSON schema,
so the same registry renders the orchestrator's prompt, validates an agent
block's arguments, and is offered as OpenAI-style tools.
"""
from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from experiments.masbench.scorer import extract_boxed, normalize
from jaxlab.llm.types import ChatClient, ChatRequest, Usage

SOLVER = ("You are a careful problem solver. Reason step by step and put every final answer in \\boxed{}, "
          "in the order the question asks.")


@dataclass
class Runtime:
    """What every sub-agent call shares: the client, sampling, a usage tally, documents for search."""

    client: ChatClient
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0
    documents: tuple[str, ...] = ()
    usage: Usage = Usage()
    calls: int = 0
    _seq: Any = field(default_factory=itertools.count, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ask(self, prompt: str, system: str = SOLVER, n: int = 1, temperature: float | None = None) -> list[str]:
        """One request; each call gets a fresh seed so cached runs still sample distinct answers."""
        with self._lock:
            seed = self.seed * 1_000_003 + next(self._seq)
        req = ChatRequest(messages=({"role": "system", "content": system}, {"role": "user", "content": prompt}),
                          temperature=self.temperature if temperature is None else temperature,
                          max_tokens=self.max_tokens, n=n, seed=seed, model=getattr(self.client, "model", ""))
        resp = self.client.complete(req)
        with self._lock:
            self.usage = self.usage + resp.usage
            self.calls += 1
        return [c.text for c in resp.choices]


def answer_key(text: str) -> tuple[str, ...]:
    """The boxed answers of a response, normalised, as a voting key."""
    return tuple(normalize(a) for a in extract_boxed(text))


def majority(texts: list[str]) -> str:
    """The first response whose boxed answers are the most common (ties: earliest)."""
    keys = [answer_key(t) for t in texts]
    counts = Counter(k for k in keys if k)
    if not counts:
        return texts[0]
    best = max(counts, key=lambda k: (counts[k], -keys.index(k)))
    return texts[keys.index(best)]


def cot(rt: Runtime, args: dict) -> str:
    return rt.ask(args["task"], temperature=0.0)[0]


def self_consistency(rt: Runtime, args: dict) -> str:
    return majority(rt.ask(args["task"], n=int(args.get("n_samples", 3))))


def debate(rt: Runtime, args: dict) -> str:
    n_agents, rounds = int(args.get("n_agents", 2)), int(args.get("rounds", 2))
    answers = [rt.ask(args["task"])[0] for _ in range(n_agents)]
    for _ in range(rounds - 1):
        answers = [rt.ask(f"{args['task']}\n\nOther agents answered:\n\n"
                          + "\n\n".join(f"Agent {j + 1}: {a}" for j, a in enumerate(answers) if j != i)
                          + "\n\nConsider their reasoning, then give your updated solution.")[0]
                   for i in range(n_agents)]
    return majority(answers)


def reflexion(rt: Runtime, args: dict) -> str:
    answer = rt.ask(args["task"], temperature=0.0)[0]
    for _ in range(int(args.get("max_rounds", 2))):
        critique = rt.ask(f"Task:\n{args['task']}\n\nProposed solution:\n{answer}\n\nCheck every step. If the "
                          "solution is fully correct reply exactly CORRECT; otherwise explain the mistakes.",
                          system="You are a strict reviewer.", temperature=0.0)[0]
        if critique.strip().upper().startswith("CORRECT"):
            break
        answer = rt.ask(f"Task:\n{args['task']}\n\nYour previous solution:\n{answer}\n\nReviewer feedback:\n"
                        f"{critique}\n\nWrite a corrected solution.", temperature=0.0)[0]
    return answer


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def search(rt: Runtime, args: dict) -> str:
    """Keyword retrieval over the runtime's documents (offline; no web), then answer with them."""
    query = _words(args.get("query") or args["task"])
    ranked = sorted(rt.documents, key=lambda d: -len(query & _words(d)))[: int(args.get("top_k", 3))]
    passages = "\n".join(f"[{i + 1}] {d}" for i, d in enumerate(ranked)) or "(no documents available)"
    return rt.ask(f"Retrieved passages:\n{passages}\n\nTask:\n{args['task']}", temperature=0.0)[0]


@dataclass(frozen=True)
class SubAgent:
    name: str
    description: str
    parameters: dict
    run: Callable[[Runtime, dict], str]

    def tool_schema(self) -> dict:
        props = {"agent_id": {"type": "string", "description": "unique id; others reference it as ${id}"},
                 "agent_description": {"type": "string"}, **self.parameters["properties"]}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props,
                           "required": ["agent_id", "agent_description", *self.parameters["required"]]}}}


def _params(**extra: dict) -> dict:
    props = {"task": {"type": "string", "description": "the sub-task; may contain ${id} references"}, **extra}
    return {"type": "object", "properties": props, "required": ["task"]}


_INT = {"type": "integer", "minimum": 1, "maximum": 8}
REGISTRY: dict[str, SubAgent] = {a.name: a for a in (
    SubAgent("CoTAgent", "one chain-of-thought solution (greedy)", _params(), cot),
    SubAgent("SCAgent", "self-consistency: n sampled solutions, majority answer", _params(n_samples=_INT),
             self_consistency),
    SubAgent("DebateAgent", "several agents answer, read each other, revise; majority answer",
             _params(n_agents=_INT, rounds=_INT), debate),
    SubAgent("ReflexionAgent", "answer, self-critique, revise until the critic accepts",
             _params(max_rounds=_INT), reflexion),
    SubAgent("SearchAgent", "retrieve passages relevant to a query, then answer with them",
             _params(query={"type": "string"}, top_k=_INT), search),
)}
ALIASES = {"WebSearchAgent": "SearchAgent", "CoT": "CoTAgent", "SC": "SCAgent", "Debate": "DebateAgent",
           "Reflexion": "ReflexionAgent", "Search": "SearchAgent", "WebSearch": "SearchAgent"}
