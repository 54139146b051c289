"""ADAS (Hu et al.) as MAS-ProVe runs it: archive search over a validation split, then the best agent at test.

The archive starts with the seed agents (chain of thought, self-consistency, self-refine, debate, step-back
abstraction, quality-diversity, role assignment), each a ``forward(task)`` written against
``call_agent(instruction, role)``.  :meth:`ADAS.search` scores every seed on the validation tasks (fitness =
the bootstrap median of accuracy, with its 95% interval, as the authors' ``bootstrap_confidence_interval``),
then for each generation asks the meta agent for a new agent given the archive and its fitness (a failing
proposal is sent back with its error up to ``debug_max`` times), scores it and appends it.  :meth:`ADAS.solve`
runs the fittest agent (ties: the earlier one) on the test task; without a search, the first seed.

Generated code runs in :mod:`jaxlab.sandbox`; every ``call_agent`` is a ``ctx.agent`` turn, so agent-level
verification reaches inside generated agents.  The meta agent's reflexion rounds are not reproduced.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.code import extract_code, run_generated

_SEEDS = {
    "Chain-of-Thought": ("Reason step by step before answering.", '''
def forward(task):
    return call_agent("Think step by step, then give the final answer in \\\\boxed{}.\\n\\n" + task, "cot")
'''),
    "Self-Consistency with Chain-of-Thought": ("Sample several reasoning paths and keep the majority answer.", '''
import re
from collections import Counter
def forward(task):
    outs = [call_agent("Think step by step; box the final answer.\\n\\n" + task, "cot") for _ in range(5)]
    keys = [(re.findall(r"\\\\boxed\\{([^{}]*)\\}", o) or [""])[-1].strip() for o in outs]
    best = Counter(k for k in keys if k).most_common(1)
    return outs[keys.index(best[0][0])] if best else outs[0]
'''),
    "Self-Refine (Reflexion)": ("Answer, criticise, refine until the critic is satisfied.", '''
def forward(task):
    answer = call_agent("Think step by step; box the final answer.\\n\\n" + task, "cot")
    for _ in range(3):
        critique = call_agent("Review this solution. Reply exactly CORRECT if it is right, else list the errors."
                              "\\n\\nTask:\\n" + task + "\\n\\nSolution:\\n" + answer, "critic")
        if critique.strip().upper().startswith("CORRECT"):
            break
        answer = call_agent("Task:\\n" + task + "\\n\\nPrevious solution:\\n" + answer + "\\n\\nFeedback:\\n"
                            + critique + "\\n\\nWrite a better solution; box the final answer.", "cot")
    return answer
'''),
    "LLM Debate": ("Agents with different roles answer, read each other, and a final agent decides.", '''
def forward(task):
    roles = ["Math Professor", "Grade School Teacher", "Math Enthusiast"]
    answers = [call_agent("As a " + r + ", solve step by step; box the answer.\\n\\n" + task, "debater")
               for r in roles]
    for _ in range(1):
        answers = [call_agent("As a " + r + ", consider the other solutions and update yours; box the answer."
                              "\\n\\nTask:\\n" + task + "\\n\\nSolutions:\\n" + "\\n\\n".join(answers), "debater")
                   for r in roles]
    return call_agent("Given these solutions, give the final answer in \\\\boxed{}.\\n\\nTask:\\n" + task
                      + "\\n\\n" + "\\n\\n".join(answers), "final_decision")
'''),
    "Step-back Abstraction": ("First state the principles involved, then solve with them.", '''
def forward(task):
    principles = call_agent("What principles and formulas are involved in this task? List them.\\n\\n" + task,
                            "principles")
    return call_agent("Principles:\\n" + principles + "\\n\\nUsing them, solve step by step; box the answer."
                      "\\n\\n" + task, "cot")
'''),
    "Quality-Diversity": ("Generate diverse solutions, then pick the best.", '''
def forward(task):
    sols = []
    for _ in range(3):
        sols.append(call_agent("Solve in a way different from these attempts; box the answer.\\n\\nTask:\\n" + task
                               + "\\n\\nEarlier attempts:\\n" + "\\n\\n".join(sols), "diverse"))
    return call_agent("Pick the most reliable of these solutions and restate it with the answer boxed.\\n\\n"
                      + "\\n\\n".join(sols), "final_decision")
'''),
    "Dynamic Assignment of Roles": ("A router picks the expert best suited to the task.", '''
def forward(task):
    role = call_agent("Which expert fits this task best: Physics Expert, Chemistry Expert, Biology Expert, "
                      "Math Expert? Reply with the name only.\\n\\n" + task, "router").strip()
    return call_agent("You are a " + role + ". Solve step by step; box the answer.\\n\\n" + task, "expert")
'''),
}

META = """You design agent systems in Python for this kind of task. Each agent is a function `forward(task: str) -> \
str` that solves the task by calling `call_agent(instruction, role)` (returns the model's reply text) and returns a \
response whose final answer is in \\boxed{{}}. Only the standard library is available; there is no network.

Archive of discovered agents with their validation fitness (bootstrap median accuracy, 95% interval):
{archive}

Design a new agent that is likely to have higher fitness; learn from the archive, do not copy it. Reply with a \
JSON object {{"thought": ..., "name": ..., "code": ...}} or with the name on the first line and one ```python \
code block.{error}"""


def bootstrap(acc: Sequence[float], samples: int = 2000, seed: int = 0) -> dict:
    """Bootstrap of the mean accuracy: median and 95% interval (the authors' fitness)."""
    data = np.asarray(acc, float)
    if data.size == 0:
        raise ValueError("bootstrap: no accuracy values")
    means = np.random.default_rng(seed).choice(data, size=(samples, data.size), replace=True).mean(axis=1)
    return {"median": float(np.median(means)), "low": float(np.percentile(means, 2.5)),
            "high": float(np.percentile(means, 97.5)), "n": int(data.size)}


@dataclass
class Agent:
    name: str
    thought: str
    code: str
    generation: int = 0
    fitness: dict = field(default_factory=dict)
    errors: int = 0


def seed_archive() -> list[Agent]:
    return [Agent(name, thought, code.strip() + "\n") for name, (thought, code) in _SEEDS.items()]


def _proposal(text: str) -> tuple[str, str, str]:
    try:
        start, end = text.index("{"), text.rindex("}") + 1
        data = json.loads(text[start:end])
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            return str(data.get("name", "proposed agent")), str(data.get("thought", "")), data["code"]
    except ValueError:
        pass
    first = text.strip().splitlines()[0] if text.strip() else "proposed agent"
    return re.sub(r"[`#*]", "", first).strip()[:80] or "proposed agent", "", extract_code(text)


class ADAS:
    name, family = "adas", "code"

    def __init__(self, generations: int = 1, debug_max: int = 3) -> None:
        self.generations, self.debug_max = generations, debug_max
        self.archive = seed_archive()
        self.searched = False

    def best(self) -> Agent:
        scored = [a for a in self.archive if a.fitness]
        return max(scored, key=lambda a: a.fitness["median"]) if scored else self.archive[0]

    def _fitness(self, agent: Agent, make_ctx: Callable[[object, str], MASContext], tasks: Sequence,
                 grade: Callable[[object, str], bool]) -> tuple[dict, str]:
        acc, error = [], ""
        for task in tasks:
            ctx = make_ctx(task, f"adas:{agent.name}")
            ok, out = run_generated(ctx, 0, agent.code, blocks=False)
            acc.append(float(ok and grade(task, out)))
            error = error or ("" if ok else out)
        return bootstrap(acc), error

    def search(self, make_ctx: Callable[[object, str], MASContext], tasks: Sequence,
               grade: Callable[[object, str], bool], meta_ctx: MASContext) -> list[Agent]:
        """Score the archive on ``tasks`` (the validation split), then grow it ``generations`` times.

        ``make_ctx(task, tag)`` gives a fresh context per validation run; ``meta_ctx`` carries the meta agent.
        """
        for agent in self.archive:
            if not agent.fitness:
                agent.fitness, _ = self._fitness(agent, make_ctx, tasks, grade)
        for g in range(1, self.generations + 1):
            error = ""
            for attempt in range(self.debug_max + 1):
                listing = "\n\n".join(f"## {a.name} (fitness {a.fitness['median']:.2f} [{a.fitness['low']:.2f}, "
                                      f"{a.fitness['high']:.2f}])\n{a.thought}\n```python\n{a.code}```"
                                      for a in self.archive)
                reply = meta_ctx.agent("meta_agent", g * 10 + attempt, META.format(
                    archive=listing, error=f"\n\nYour previous proposal failed with:\n{error}\nFix it." if error
                    else ""), system="You are an expert designer of agent systems.")
                name, thought, code = _proposal(reply)
                agent = Agent(name, thought, code, generation=g, errors=attempt)
                fitness, error = self._fitness(agent, make_ctx, tasks, grade)
                if not error or fitness["median"] > 0 or attempt == self.debug_max:
                    agent.fitness = fitness
                    self.archive.append(agent)
                    break
        self.searched = True
        return self.archive

    def solve(self, ctx: MASContext) -> str:
        agent = self.best()
        ctx.trace["adas"] = {"agent": agent.name, "fitness": agent.fitness, "searched": self.searched,
                             "archive": [(a.name, a.fitness.get("median")) for a in self.archive]}
        ok, out = ctx.iteration(0, lambda c: run_generated(c, 0, agent.code, blocks=False),
                                lambda res: res[1])
        return out if ok else ""
