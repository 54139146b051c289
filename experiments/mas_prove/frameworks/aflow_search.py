"""AFlow's workflow optimisation loop as released (MAS-ProVe ``mas/aflow/scripts/optimizer.py`` + ``optimizer_utils``).

Round 1 is the authors' starting workflow (one Custom call with an empty instruction), scored on the validation
tasks ``validation_rounds`` times.  Each later round:

1. ``top_rounds``: round 1 first, then the best-scoring other rounds (by mean score) up to ``sample`` of them;
2. ``select_round``: a parent drawn with the authors' mixed distribution, ``lambda * uniform + (1 - lambda) *
   softmax(alpha * (100 * score - max))`` with alpha 0.2, lambda 0.3, over the candidates sorted by score;
3. the optimiser sees the parent's graph, prompts, mean score, experience (every earlier modification of this
   parent with its score) and up to 3 logged failures, and replies with ``<modification>``, ``<graph>``,
   ``<prompt>``; a reply repeating one of the parent's earlier modifications, or with no field at all, is asked
   for again (the authors' ``while True``; here at most ``max_regenerate`` times);
4. the new workflow is scored ``validation_rounds`` times; the experience records parent, modification, before,
   after and ``succeed = after > before``.  A graph that does not validate fails its round (the authors' round
   raises, is logged and the round counter moves on).

The optimiser edits workflows as data (:mod:`.graph` nodes, prompts as ``NAME = \"\"\"...\"\"\"`` parsed without
``exec``) instead of Python classes.  The convergence early stop (off by default in the class) is not reproduced.
:meth:`AFlowSearch.best` is the round with the highest mean validation score (ties: the earlier), which the test
phase runs (the authors pick test rounds by hand: ``rounds = [1]``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Sequence

import numpy as np

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.aflow_prompts import (
    EXPERIENCE_HEAD,
    EXPERIENCE_NOTE,
    NO_EXPERIENCE,
    WORKFLOW_INPUT,
    WORKFLOW_OPTIMIZE,
    operator_description,
)

INITIAL_WORKFLOW: tuple[dict, ...] = ({"id": "solution", "op": "Custom", "in": ["problem"]},)
AIME_OPERATORS = ("Custom", "ScEnsemble", "Programmer")


def probabilities(scores: Sequence[float], alpha: float = 0.2, lambda_: float = 0.3) -> np.ndarray:
    """The authors' ``_compute_probabilities`` (scores in percent)."""
    s = np.asarray(scores, np.float64)
    if s.size == 0:
        raise ValueError("probabilities: score list is empty")
    weights = np.exp(alpha * (s - s.max()))
    mixed = lambda_ / s.size + (1 - lambda_) * weights / weights.sum()
    return mixed / mixed.sum()


def top_rounds(rounds: list[dict], sample: int) -> list[dict]:
    """Round 1 first, then the other rounds by mean score (descending), ``sample`` in all."""
    by_score = sorted(
        ({"round": r["round"], "score": float(np.mean(r["scores"]))} for r in rounds if r["scores"]),
        key=lambda x: x["score"],
        reverse=True,
    )
    out = [x for x in by_score if x["round"] == 1]
    for x in by_score:
        if x["round"] != 1 and len(out) < sample:
            out.append(x)
    return out


def select_round(items: list[dict], rng: np.random.Generator) -> dict:
    ordered = sorted(items, key=lambda x: x["score"], reverse=True)
    return ordered[rng.choice(len(ordered), p=probabilities([x["score"] * 100 for x in ordered]))]


def format_experience(experience: list[dict], parent: int) -> str:
    """The authors' ``format_experience`` over this parent's children (failures with scores, then successes)."""
    mine = [e for e in experience if e["father node"] == parent]
    if not mine:
        return NO_EXPERIENCE.format(round=parent)
    text = EXPERIENCE_HEAD.format(score=mine[0]["before"])
    text += "".join(
        f"-Absolutely prohibit {e['modification']} (Score: {e['after']})\n" for e in mine if not e["succeed"]
    )
    text += "".join(f"-Absolutely prohibit {e['modification']} \n" for e in mine if e["succeed"])
    return text + EXPERIENCE_NOTE


def is_new_modification(experience: list[dict], modification: str, parent: int) -> bool:
    return all(e["modification"] != modification for e in experience if e["father node"] == parent)


def parse_reply(text: str) -> dict | None:
    """The authors' fallback field extraction: each XML field or ''; None when none is present."""
    out = {}
    for name in ("modification", "graph", "prompt"):
        m = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
        out[name] = m.group(1).strip() if m else ""
    return out if any(out.values()) else None


def parse_prompts(text: str) -> dict[str, str]:
    """``NAME = \"\"\"...\"\"\"`` assignments (the authors' prompt.py), read without executing anything."""
    return {m.group(1): m.group(2) for m in re.finditer(r'([A-Z][A-Z0-9_]*)\s*=\s*"""(.*?)"""', text, re.DOTALL)}


def show_prompts(prompts: dict[str, str]) -> str:
    return "\n".join(f'{name} = """{body}"""' for name, body in prompts.items())


def resolve(nodes: list[dict], prompts: dict[str, str], operators: Sequence[str]) -> list[dict]:
    """Nodes ready to run: each Custom's ``prompt`` name replaced by its text; errors name the node and field."""
    from experiments.mas_prove.frameworks.graph import validate_workflow

    out = []
    for node in validate_workflow(nodes):
        if node["op"] not in operators:
            raise ValueError(f"workflow node {node['id']!r}: op: expected one of {list(operators)}, got {node['op']!r}")
        if "prompt" in node:
            if node["prompt"] not in prompts:
                raise ValueError(
                    f"workflow node {node['id']!r}: prompt: {node['prompt']!r} is not in prompt_custom "
                    f"(has {sorted(prompts)})"
                )
            node["instruction"] = prompts[node["prompt"]]
        node.setdefault("instruction", "")
        out.append(node)
    return out


class AFlowSearch:
    def __init__(
        self,
        max_rounds: int = 10,
        validation_rounds: int = 2,
        sample: int = 4,
        operators: tuple[str, ...] = AIME_OPERATORS,
        question_type: str = "math",
        seed: int = 0,
        max_regenerate: int = 5,
        optimizer_max_tokens: int = 4096,
    ) -> None:
        """``optimizer_max_tokens``: the optimiser's own reply budget (a graph plus its prompts does not fit the
        agents' ``max_tokens``; the authors set none)."""
        self.optimizer_max_tokens = optimizer_max_tokens
        self.max_rounds, self.validation_rounds, self.sample = max_rounds, validation_rounds, sample
        self.operators, self.type, self.max_regenerate = operators, question_type, max_regenerate
        self.rng = np.random.default_rng(seed)
        self.rounds: list[dict] = []
        """{"round", "nodes", "prompts", "scores" (one per validation run), "logs" (failed tasks), "error"}."""
        self.experience: list[dict] = []

    def evaluate(self, nodes: list[dict], prompts: dict, number: int, make_ctx, tasks: Sequence, grade) -> dict:
        from experiments.mas_prove.frameworks.graph import AFlow

        flow = AFlow(resolve(nodes, prompts, self.operators))
        record = {"round": number, "nodes": nodes, "prompts": prompts, "scores": [], "logs": [], "error": ""}
        for v in range(self.validation_rounds):
            right = 0
            for task in tasks:
                out = flow.solve(make_ctx(task, f"aflow:round{number}:run{v}"))
                ok = bool(grade(task, out))
                right += ok
                if not ok:
                    record["logs"].append(
                        {
                            "question": task.prompt if hasattr(task, "prompt") else str(task),
                            "right_answer": list(getattr(task, "answers", ())),
                            "model_output": out,
                        }
                    )
            record["scores"].append(right / len(tasks))
        return record

    def _prompt(self, parent: dict) -> str:
        logs = parent["logs"]
        picked = [logs[i] for i in sorted(self.rng.choice(len(logs), min(3, len(logs)), replace=False))] if logs else []
        return WORKFLOW_INPUT.format(
            experience=format_experience(self.experience, parent["round"]),
            score=float(np.mean(parent["scores"])),
            graph=json.dumps(parent["nodes"]),
            prompt=show_prompts(parent["prompts"]),
            operator_description=operator_description(self.operators),
            log="".join(json.dumps(x, indent=4, ensure_ascii=False) + "\n\n" for x in picked),
        ) + WORKFLOW_OPTIMIZE.format(type=self.type, ops=list(self.operators))

    def optimize(
        self,
        make_ctx: Callable[[object, str], MASContext],
        tasks: Sequence,
        grade: Callable[[object, str], bool],
        opt_ctx: MASContext,
    ) -> list[dict]:
        if not tasks:
            raise ValueError("AFlow search: no validation tasks")
        opt_ctx = dataclasses.replace(opt_ctx, max_tokens=self.optimizer_max_tokens)
        if not self.rounds:
            self.rounds.append(self.evaluate(list(INITIAL_WORKFLOW), {}, 1, make_ctx, tasks, grade))
        for _ in range(self.max_rounds):
            number = self.rounds[-1]["round"] + 1
            parent_item = select_round(top_rounds(self.rounds, self.sample), self.rng)
            parent = next(r for r in self.rounds if r["round"] == parent_item["round"])
            reply = None
            for _ in range(self.max_regenerate):
                text = opt_ctx.unverified("optimizer", number, self._prompt(parent), system="")
                reply = parse_reply(text)
                if reply is not None and is_new_modification(self.experience, reply["modification"], parent["round"]):
                    break
                reply = None
            if reply is None:
                self.rounds.append(
                    {
                        "round": number,
                        "nodes": [],
                        "prompts": {},
                        "scores": [],
                        "logs": [],
                        "error": f"no new modification after {self.max_regenerate} replies",
                    }
                )
                continue
            try:
                nodes, prompts = json.loads(reply["graph"]), parse_prompts(reply["prompt"])
                record = self.evaluate(nodes, prompts, number, make_ctx, tasks, grade)
            except (ValueError, TypeError, KeyError) as exc:  # the authors' failed round: logged, counter moves on
                self.rounds.append(
                    {
                        "round": number,
                        "nodes": [],
                        "prompts": {},
                        "scores": [],
                        "logs": [],
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
                continue
            self.rounds.append(record)
            after = float(np.mean(record["scores"]))
            self.experience.append(
                {
                    "father node": parent["round"],
                    "modification": reply["modification"],
                    "before": parent_item["score"],
                    "after": after,
                    "succeed": bool(after > parent_item["score"]),
                }
            )
        return self.rounds

    def best(self) -> dict:
        scored = [r for r in self.rounds if r["scores"]]
        if not scored:
            raise ValueError("AFlow search: no round was scored")
        return max(scored, key=lambda r: (float(np.mean(r["scores"])), -r["round"]))
