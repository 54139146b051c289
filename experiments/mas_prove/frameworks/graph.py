"""Graph-based frameworks: AFlow (a workflow graph of operators, loaded as data) and MaAS (a controller samples
a query-dependent stack of operator layers from the supernet).

AFlow: a workflow is a list of nodes ``{"id", "op", "in": [...], ...}`` run in order; ``in`` names earlier
nodes or ``"problem"``.  The default is the shape AFlow converges to on math (several Custom solutions, a
Programmer run, ScEnsemble over them, then Review and a Revise that runs only when the review fails).
:meth:`AFlow.search` runs the authors' optimisation loop (:mod:`.aflow_search`) from their one-Custom starting
workflow on validation tasks and keeps the best round; a saved workflow loads with :func:`load_workflow`.  Each
node is one ``ctx.iteration``.

MaAS: as the authors' optimised AIME graph runs it — a Programmer pass and a Custom answer using its output,
then the controller's layers (each operator adds to the pool of solutions, ScEnsemble collapses it,
EarlyStop ends), then a final ScEnsemble when more than one solution is left.  Each layer is one
``ctx.iteration``; the plan is recorded in ``ctx.trace["maas"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks import operators as ops
from experiments.mas_prove.frameworks.graph_prompts import (
    DETAILED_SOLUTION_PROMPT,
    GENERATE_SOLUTION_PROMPT,
    REFINE_ANSWER_PROMPT,
)
from experiments.mas_prove.frameworks.maas_controller import OPERATORS, Controller

GENERATE = GENERATE_SOLUTION_PROMPT
WORKFLOW_OPS = ("Custom", "AnswerGenerate", "Programmer", "ScEnsemble", "Review", "Revise", "SelfRefine")
MATH_WORKFLOW: tuple[dict, ...] = (
    {"id": "s1", "op": "Custom", "in": ["problem"], "instruction": GENERATE},
    {"id": "s2", "op": "Custom", "in": ["problem"], "instruction": GENERATE},
    {"id": "s3", "op": "Custom", "in": ["problem"], "instruction": GENERATE},
    {"id": "code", "op": "Programmer", "in": ["problem", "s1"]},
    {"id": "best", "op": "ScEnsemble", "in": ["s1", "s2", "s3", "code"]},
    {"id": "check", "op": "Review", "in": ["best"]},
    {"id": "final", "op": "Revise", "in": ["best", "check"]},
)


def validate_workflow(nodes: list[dict] | tuple[dict, ...]) -> list[dict]:
    """Check every node names a known operator and only earlier inputs; errors name the node and field."""
    seen = {"problem"}
    out = []
    for k, node in enumerate(nodes):
        if not isinstance(node, dict) or not {"id", "op"} <= set(node):
            raise ValueError(f"workflow node {k}: expected a dict with 'id' and 'op', got {node!r}")
        if node["op"] not in WORKFLOW_OPS:
            raise ValueError(
                f"workflow node {node['id']!r}: op: expected one of {list(WORKFLOW_OPS)}, got {node['op']!r}"
            )
        unknown = [i for i in node.get("in", []) if i not in seen]
        if unknown:
            raise ValueError(f"workflow node {node['id']!r}: in: {unknown} are not earlier nodes or 'problem'")
        if node["id"] in seen:
            raise ValueError(f"workflow node {k}: id {node['id']!r} is used twice")
        seen.add(node["id"])
        out.append(dict(node))
    if not out:
        raise ValueError("workflow: expected at least one node")
    return out


def load_workflow(path: str | Path) -> list[dict]:
    """A workflow JSON file: a list of nodes or ``{"nodes": [...]}``."""
    data = json.loads(Path(path).read_text())
    return validate_workflow(data["nodes"] if isinstance(data, dict) else data)


def _text(value: object) -> str:
    if isinstance(value, dict):  # Programmer / Review results read as text downstream
        return f"Code output: {value['output']}" if "output" in value else value.get("feedback", "")
    return str(value)


def run_node(ctx: MASContext, r: int, node: dict, env: dict) -> object:
    inputs = [env[i] for i in node.get("in", [])]
    problem = ctx.task
    op = node["op"]
    if op == "Custom":
        return ops.custom(ctx, r, _text(inputs[0]) if inputs else problem, node.get("instruction", GENERATE))
    if op == "AnswerGenerate":
        return ops.answer_generate(ctx, r, problem)
    if op == "Programmer":
        return ops.programmer(ctx, r, problem, _text(inputs[1]) if len(inputs) > 1 else "None")
    if op == "ScEnsemble":
        return ops.sc_ensemble(ctx, r, problem, [_text(x) for x in inputs])
    if op == "SelfRefine":
        return ops.self_refine(ctx, r, problem, _text(inputs[-1]))
    if op == "Review":
        return ops.review(ctx, r, problem, _text(inputs[-1]))
    # Revise: only when the review it reads failed; otherwise the solution passes through unchanged
    solution, verdict = _text(inputs[0]), inputs[1] if len(inputs) > 1 else {"ok": False, "feedback": ""}
    return solution if verdict.get("ok") else ops.revise(ctx, r, problem, solution, verdict.get("feedback", ""))


class AFlow:
    """Runs a workflow graph of AFlow operators (default :data:`MATH_WORKFLOW`)."""

    name, family = "aflow", "graph"

    def __init__(self, workflow: list[dict] | tuple[dict, ...] = MATH_WORKFLOW) -> None:
        self.workflow = validate_workflow(workflow)
        self.searched: dict | None = None
        self.generations = 1

    def search(
        self,
        make_ctx: Callable[[object, str], MASContext],
        tasks: Sequence,
        grade: Callable[[object, str], bool],
        opt_ctx: MASContext,
        **kw,
    ) -> list[dict]:
        """AFlow's optimisation loop (:mod:`.aflow_search`) on validation tasks; the best round becomes the workflow."""
        from experiments.mas_prove.frameworks.aflow_search import AFlowSearch, resolve

        search = AFlowSearch(max_rounds=self.generations, **kw)
        rounds = search.optimize(make_ctx, tasks, grade, opt_ctx)
        best = search.best()
        self.workflow = resolve(best["nodes"], best["prompts"], search.operators)
        self.searched = {
            "best_round": best["round"],
            "rounds": [(r["round"], r["scores"], r["error"]) for r in rounds],
            "experience": search.experience,
        }
        return rounds

    def solve(self, ctx: MASContext) -> str:
        if self.searched:
            ctx.trace["aflow"] = self.searched
        env: dict = {"problem": ctx.task}
        for r, node in enumerate(self.workflow):
            env[node["id"]] = ctx.iteration(
                r, lambda c, r=r, node=node, env=dict(env): run_node(c, r, node, env), _text
            )
        return _text(env[self.workflow[-1]["id"]])


class MaAS:
    """MaAS: the controller's sampled operator layers on top of a Programmer-informed first answer."""

    name, family = "maas", "graph"

    def __init__(self, controller: Controller | None = None) -> None:
        self.controller = controller or Controller()

    def _first(self, ctx: MASContext) -> list[str]:
        code = ops.programmer(ctx, 0, ctx.task)
        if code["ok"]:
            return [ops.custom(ctx, 0, f"{ctx.task}\nCode output: {code['output']}", REFINE_ANSWER_PROMPT)]
        return [ops.custom(ctx, 0, ctx.task, GENERATE)]

    def _layer(self, ctx: MASContext, r: int, names: list[str], solutions: list[str], current: str) -> tuple:
        solutions = list(solutions)
        for name in names:
            if name in ("Generate", "GenerateCoT"):
                new = ops.custom(ctx, r, ctx.task, DETAILED_SOLUTION_PROMPT, name)
                solutions.append(new)
            elif name == "MultiGenerateCoT":
                many = ops.multi_generate(ctx, r, ctx.task)
                solutions += many
                new = many[-1]
            elif name == "SelfRefine":
                new = ops.self_refine(ctx, r, ctx.task, current)
                solutions.append(new)
            elif name == "Programmer":
                new = f"Code output: {ops.programmer(ctx, r, ctx.task, current or 'None')['output']}"
                solutions.append(new)
            elif name == "ScEnsemble":
                new = ops.sc_ensemble(ctx, r, ctx.task, solutions)
                solutions = [new]
            else:  # EarlyStop: the controller's stop signal, no call
                new = current
            current = new
        return solutions, current

    def solve(self, ctx: MASContext) -> str:
        return self.run_plan(ctx, self.controller.sample(ctx.task, ctx.position_seed("controller")))

    def train(
        self,
        make_ctx: Callable[[object, str], MASContext],
        tasks: Sequence,
        grade: Callable[[object, str], bool],
        steps: int,
        cost_weight: float = 0.002,
    ) -> list[float]:
        """Train the controller on validation tasks: utility = correct - ``cost_weight`` x model calls."""
        curve = []
        for step in range(steps):
            task = tasks[step % len(tasks)]
            ctx = make_ctx(task, f"maas-train-{step}")
            plan, _drawn = self.controller.sample_with_choices(ctx.task, ctx.position_seed("controller", step))
            out = self.run_plan(ctx, plan)
            utility = float(grade(task, out)) - cost_weight * ctx.meter.calls
            self.controller.update(ctx.task, plan, utility)
            curve.append(utility)
        return curve

    def run_plan(self, ctx: MASContext, plan: list[list[str]]) -> str:
        ctx.trace["maas"] = {"plan": plan}
        solutions = ctx.iteration(0, self._first, lambda s: s[-1])
        current = solutions[-1]
        for r, names in enumerate(plan, start=1):
            solutions, current = ctx.iteration(
                r,
                lambda c, r=r, n=names, s=list(solutions), cur=current: self._layer(c, r, n, s, cur),
                lambda res: res[1],
            )
        return ops.sc_ensemble(ctx, len(plan) + 1, ctx.task, solutions) if len(solutions) > 1 else current


__all__ = ["AFlow", "MaAS", "MATH_WORKFLOW", "OPERATORS", "load_workflow", "validate_workflow"]
