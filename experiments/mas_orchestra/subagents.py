"""The frozen sub-agents the orchestrator composes, with the MAS-Orchestra authors' settings.

CoTAgent (one call), SCAgent (5 samples at T=0.5, majority vote), DebateAgent
(one debater per ``debate_roles`` entry, 5 rounds, each debater reading its own
and the others' previous answers, then a final-decision agent), ReflexionAgent
(answer, critic, up to 5 reflections with the whole history of attempts and
feedback), WebSearchAgent (the authors' research loop: the model calls a BM25
``web_search`` over a local corpus and ``think_tool``, up to 5 turns; see
:mod:`experiments.mas_orchestra.search`).  Every agent gets the composed task text (see
:func:`experiments.mas_orchestra.execute.compose_task`) and its own arguments.

Each sampling call's seed is derived from its position (run seed, problem,
agent id, the call's role in the agent), so a rerun sends identical requests.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from experiments.mas_prove.core import derive_seed
from experiments.mas_prove.frameworks.common import majority
from experiments.mas_orchestra.search import Corpus, research, single_query
from jaxlab.llm.types import ChatClient, ChatRequest, ChatResponse, Usage

SOLVER = (
    "You are a careful problem solver. Reason step by step and put every final answer in \\boxed{}, "
    "in the order the question asks."
)
# The authors' instructions (blocks_harmony/{cot,cot_sc,llm_debate,reflexion}.py), less their sentences about the
# JSON 'thinking'/'answer' fields: the sub-agents here answer in text, the final answer in \\boxed{}.
STEP_BY_STEP = "Please think step by step and then solve the task."
DEBATE_UPDATE = (
    "Given solutions to the problem from other agents, consider their opinions as additional advice. "
    "Please think carefully and provide an updated answer."
)
FINAL_DECISION = "Given all the above thinking and answers, reason over them carefully and provide a final answer."
REFLECT = (
    "Given previous attempts and feedback, carefully consider where you could go wrong in your latest attempt. "
    "Using insights from previous attempts, try to solve the task better."
)
CRITIC = (
    "Please review the answer above and criticize on where might be wrong. If you are absolutely sure it is "
    "correct, end your reply with exactly: correct: True"
)


@dataclass(frozen=True)
class Settings:
    """The authors' ``blocks_harmony`` constants; smaller values make cheap runs."""

    temperature: float = 0.5
    sc_samples: int = 5
    debate_rounds: int = 5
    reflexion_rounds: int = 5
    search_top_k: int = 5
    search_mode: str = "tools"
    """``tools``: the authors' research loop (the model calls web_search/think_tool); ``single``: one BM25 query
    with the sub-task, for models that cannot call tools (see :mod:`experiments.mas_orchestra.search`)."""
    search_iterations: int = 5
    search_tool_calls: int = 5

    def __post_init__(self) -> None:
        for name in (
            "sc_samples",
            "debate_rounds",
            "reflexion_rounds",
            "search_top_k",
            "search_iterations",
            "search_tool_calls",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"subagents.{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if self.search_mode not in ("tools", "single"):
            raise ValueError(f"subagents.search_mode: expected 'tools' or 'single', got {self.search_mode!r}")


@dataclass
class Runtime:
    """What every sub-agent call shares: the client, the settings, a usage tally, the search corpus."""

    client: ChatClient
    settings: Settings = field(default_factory=Settings)
    max_tokens: int = 1024
    seed: int = 0
    problem_id: str = ""
    corpus: Corpus = field(default_factory=lambda: Corpus(()))
    usage: Usage = Usage()
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ask(self, prompt: str, key: tuple, system: str = SOLVER, temperature: float | None = None) -> str:
        """One request seeded by its position ``key`` (agent id, role in the agent, round, sample)."""
        req = ChatRequest(
            messages=({"role": "system", "content": system}, {"role": "user", "content": prompt}),
            temperature=self.settings.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens,
            seed=derive_seed(self.seed, self.problem_id, *key),
            model=getattr(self.client, "model", ""),
        )
        resp = self.client.complete(req)
        self.book(resp.usage)
        return resp.text

    def chat(self, messages: list[dict], key: tuple, tools: Sequence[dict] = ()) -> ChatResponse:
        """A multi-turn request with tools (the search agent's loop), seeded by its position ``key``."""
        req = ChatRequest(
            messages=tuple(messages),
            tools=tuple(tools),
            temperature=self.settings.temperature,
            max_tokens=self.max_tokens,
            seed=derive_seed(self.seed, self.problem_id, *key),
            model=getattr(self.client, "model", ""),
        )
        resp = self.client.complete(req)
        self.book(resp.usage)
        return resp

    def book(self, usage: Usage) -> None:
        with self._lock:
            self.usage = self.usage + usage
            self.calls += 1


def cot(rt: Runtime, agent: str, task: str, args: dict) -> str:
    return rt.ask(f"{task}\n\n{STEP_BY_STEP}", (agent, "cot"))


def self_consistency(rt: Runtime, agent: str, task: str, args: dict) -> str:
    samples = [rt.ask(f"{task}\n\n{STEP_BY_STEP}", (agent, "sample", i)) for i in range(rt.settings.sc_samples)]
    return majority(samples)


def debate(rt: Runtime, agent: str, task: str, args: dict) -> str:
    roles = list(args["debate_roles"])
    previous: list[str] = []
    for r in range(rt.settings.debate_rounds):
        current = []
        for i, role in enumerate(roles):
            system = f"You are a {role}. {SOLVER}"
            if r == 0:
                prompt = f"{task}\n\n{STEP_BY_STEP}"
            else:
                others = "\n\n".join(f"Solution from the {roles[j]}:\n{a}" for j, a in enumerate(previous) if j != i)
                prompt = f"{task}\n\nYour previous solution:\n{previous[i]}\n\n{others}\n\n{DEBATE_UPDATE}"
            current.append(rt.ask(prompt, (agent, "debate", r, i), system))
        previous = current
    final = "\n\n".join(f"Solution from the {role}:\n{a}" for role, a in zip(roles, previous))
    return rt.ask(f"{task}\n\n{final}\n\n{FINAL_DECISION}", (agent, "final_decision"))


def reflexion(rt: Runtime, agent: str, task: str, args: dict) -> str:
    answer = rt.ask(f"{task}\n\n{STEP_BY_STEP}", (agent, "attempt", 0))
    history: list[tuple[str, str]] = []
    for i in range(rt.settings.reflexion_rounds):
        feedback = rt.ask(
            f"{task}\n\nSolution:\n{answer}\n\n{CRITIC}", (agent, "critic", i), "You are a strict reviewer."
        )
        if re.search(r"correct:\s*True\s*$", feedback.strip()):
            break
        history.append((answer, feedback))
        attempts = "\n\n".join(
            f"Attempt {k + 1}:\n{a}\n\nFeedback on attempt {k + 1}:\n{f}" for k, (a, f) in enumerate(history)
        )
        answer = rt.ask(f"{task}\n\n{attempts}\n\n{REFLECT}", (agent, "attempt", i + 1))
    return answer


def web_search(rt: Runtime, agent: str, task: str, args: dict) -> str:
    """BM25 over the runtime's corpus: the authors' tool-calling research loop, or one query (``search_mode``)."""
    if rt.settings.search_mode == "single":
        return single_query(rt, agent, task, args)
    return research(rt, agent, task)


@dataclass(frozen=True)
class SubAgent:
    name: str
    description: str
    parameters: dict
    run: Callable[[Runtime, str, str, dict], str]

    def tool_schema(self) -> dict:
        props = {
            "agent_id": {"type": "string", "description": "unique id ([A-Za-z0-9_]); others reference it as ${id}"},
            "agent_description": {"type": "string"},
            **self.parameters["properties"],
        }
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": props,
                    "required": ["agent_id", "agent_description", *self.parameters["required"]],
                },
            },
        }


_INPUT = {
    "agent_input": {
        "type": "string",
        "description": "the sub-task; may contain ${id} references; empty = the original question",
    }
}


def _params(**extra: dict) -> dict:
    return {"type": "object", "properties": {**_INPUT, **extra}, "required": ["agent_input", *extra]}


REGISTRY: dict[str, SubAgent] = {
    a.name: a
    for a in (
        SubAgent("CoTAgent", "one chain-of-thought solution", _params(), cot),
        SubAgent(
            "SCAgent",
            "self-consistency: several chain-of-thought samples, majority answer",
            _params(),
            self_consistency,
        ),
        SubAgent(
            "DebateAgent",
            "one debater per role answers, reads the others, revises over several rounds; a final "
            "decision agent answers",
            _params(debate_roles={"type": "array", "items": {"type": "string"}, "minItems": 2}),
            debate,
        ),
        SubAgent(
            "ReflexionAgent",
            "answer, critic, reflect with the history of attempts until the critic accepts",
            _params(),
            reflexion,
        ),
        SubAgent(
            "WebSearchAgent",
            "research the input over the local corpus (BM25 web_search tool), answer with sources",
            _params(),
            web_search,
        ),
    )
}
ALIASES = {
    "SearchAgent": "WebSearchAgent",
    "CoT": "CoTAgent",
    "SC": "SCAgent",
    "Debate": "DebateAgent",
    "Reflexion": "ReflexionAgent",
    "Search": "WebSearchAgent",
    "WebSearch": "WebSearchAgent",
}
