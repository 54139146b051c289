"""The frozen sub-agents the orchestrator composes, with the MAS-Orchestra authors' settings.

CoTAgent (one call), SCAgent (5 samples at T=0.5, majority vote), DebateAgent
(one debater per ``debate_roles`` entry, 5 rounds, each debater reading its own
and the others' previous answers, then a final-decision agent), ReflexionAgent
(answer, critic, up to 5 reflections with the whole history of attempts and
feedback), WebSearchAgent (BM25 over a local corpus, top 5 passages, then an
answer that uses them).  Every agent gets the composed task text (see
:func:`experiments.mas_orchestra.execute.compose_task`) and its own arguments.

Each sampling call's seed is derived from its position (run seed, problem,
agent id, the call's role in the agent), so a rerun sends identical requests.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from experiments.mas_prove.core import derive_seed
from experiments.mas_prove.frameworks.common import majority
from jaxlab.llm.types import ChatClient, ChatRequest, Usage

SOLVER = ("You are a careful problem solver. Reason step by step and put every final answer in \\boxed{}, "
          "in the order the question asks.")
# The authors' instructions (blocks_harmony/{cot,cot_sc,llm_debate,reflexion}.py), less their sentences about the
# JSON 'thinking'/'answer' fields: the sub-agents here answer in text, the final answer in \\boxed{}.
STEP_BY_STEP = "Please think step by step and then solve the task."
DEBATE_UPDATE = ("Given solutions to the problem from other agents, consider their opinions as additional advice. "
                 "Please think carefully and provide an updated answer.")
FINAL_DECISION = "Given all the above thinking and answers, reason over them carefully and provide a final answer."
REFLECT = ("Given previous attempts and feedback, carefully consider where you could go wrong in your latest attempt. "
           "Using insights from previous attempts, try to solve the task better.")
CRITIC = ("Please review the answer above and criticize on where might be wrong. If you are absolutely sure it is "
          "correct, end your reply with exactly: correct: True")


@dataclass(frozen=True)
class Settings:
    """The authors' ``blocks_harmony`` constants; smaller values make cheap runs."""

    temperature: float = 0.5
    sc_samples: int = 5
    debate_rounds: int = 5
    reflexion_rounds: int = 5
    search_top_k: int = 5

    def __post_init__(self) -> None:
        for name in ("sc_samples", "debate_rounds", "reflexion_rounds", "search_top_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"subagents.{name}: expected an integer >= 1, got {getattr(self, name)!r}")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Corpus:
    """A local document collection searched with BM25 (``rank_bm25.BM25Okapi``)."""

    def __init__(self, documents: Sequence[str]) -> None:
        self.documents = [d for d in documents if d.strip()]
        self._bm25 = None
        if self.documents:
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([_tokens(d) or ["_"] for d in self.documents])

    @classmethod
    def from_path(cls, path: str | Path) -> "Corpus":
        """A ``.jsonl`` (field ``contents`` or ``text``, as pyserini / BrowseComp-Plus corpora) or a folder of
        ``.md`` / ``.txt`` files."""
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".md", ".txt"))
            if not files:
                raise ValueError(f"corpus {str(path)!r}: no .md or .txt files")
            return cls([p.read_text(errors="replace") for p in files])
        if path.suffix == ".jsonl" and path.is_file():
            docs = []
            for i, line in enumerate(path.read_text().splitlines()):
                if line.strip():
                    row = json.loads(line)
                    text = row.get("contents", row.get("text"))
                    if not isinstance(text, str):
                        raise ValueError(f"{path} line {i + 1}: expected a 'contents' or 'text' string field")
                    docs.append(text)
            return cls(docs)
        raise ValueError(f"corpus: expected a .jsonl file or a folder of .md/.txt files, got {str(path)!r}")

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` best documents by BM25 (documents sharing no term with the query are never returned)."""
        if self._bm25 is None:
            return []
        q = _tokens(query)
        scores = self._bm25.get_scores(q)
        vocab = set(q)
        ranked = sorted(range(len(self.documents)), key=lambda i: -scores[i])
        return [self.documents[i] for i in ranked if vocab & set(_tokens(self.documents[i]))][:k]


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
        req = ChatRequest(messages=({"role": "system", "content": system}, {"role": "user", "content": prompt}),
                          temperature=self.settings.temperature if temperature is None else temperature,
                          max_tokens=self.max_tokens, seed=derive_seed(self.seed, self.problem_id, *key),
                          model=getattr(self.client, "model", ""))
        resp = self.client.complete(req)
        self.book(resp.usage)
        return resp.text

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
        feedback = rt.ask(f"{task}\n\nSolution:\n{answer}\n\n{CRITIC}", (agent, "critic", i),
                          "You are a strict reviewer.")
        if re.search(r"correct:\s*True\s*$", feedback.strip()):
            break
        history.append((answer, feedback))
        attempts = "\n\n".join(f"Attempt {k + 1}:\n{a}\n\nFeedback on attempt {k + 1}:\n{f}"
                               for k, (a, f) in enumerate(history))
        answer = rt.ask(f"{task}\n\n{attempts}\n\n{REFLECT}", (agent, "attempt", i + 1))
    return answer


def web_search(rt: Runtime, agent: str, task: str, args: dict) -> str:
    """Offline search: BM25 over the runtime's corpus with the agent's input as the query, then answer."""
    query = args.get("agent_input") or task
    hits = rt.corpus.search(query, rt.settings.search_top_k)
    passages = "\n\n".join(f"[{i + 1}] {d[:2000]}" for i, d in enumerate(hits)) or "(no documents matched)"
    return rt.ask(f"Search results for {query!r}:\n{passages}\n\n{task}\n\nAnswer using the search results where "
                  "they help; cite them as [n].", (agent, "answer"))


@dataclass(frozen=True)
class SubAgent:
    name: str
    description: str
    parameters: dict
    run: Callable[[Runtime, str, str, dict], str]

    def tool_schema(self) -> dict:
        props = {"agent_id": {"type": "string", "description": "unique id ([A-Za-z0-9_]); others reference it as ${id}"},
                 "agent_description": {"type": "string"}, **self.parameters["properties"]}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props,
                           "required": ["agent_id", "agent_description", *self.parameters["required"]]}}}


_INPUT = {"agent_input": {"type": "string", "description": "the sub-task; may contain ${id} references; empty = "
                          "the original question"}}


def _params(**extra: dict) -> dict:
    return {"type": "object", "properties": {**_INPUT, **extra}, "required": ["agent_input", *extra]}


REGISTRY: dict[str, SubAgent] = {a.name: a for a in (
    SubAgent("CoTAgent", "one chain-of-thought solution", _params(), cot),
    SubAgent("SCAgent", "self-consistency: several chain-of-thought samples, majority answer", _params(),
             self_consistency),
    SubAgent("DebateAgent", "one debater per role answers, reads the others, revises over several rounds; a final "
             "decision agent answers", _params(debate_roles={"type": "array", "items": {"type": "string"},
                                                            "minItems": 2}), debate),
    SubAgent("ReflexionAgent", "answer, critic, reflect with the history of attempts until the critic accepts",
             _params(), reflexion),
    SubAgent("WebSearchAgent", "search the local corpus (BM25) with the agent input, answer with the passages",
             _params(), web_search),
)}
ALIASES = {"SearchAgent": "WebSearchAgent", "CoT": "CoTAgent", "SC": "SCAgent", "Debate": "DebateAgent",
           "Reflexion": "ReflexionAgent", "Search": "WebSearchAgent", "WebSearch": "WebSearchAgent"}
