"""Graph-based frameworks: an AFlow-style workflow and a MaAS-style query-dependent operator chain.

Each pass through the graph (one operator layer) is one ``ctx.iteration``.
"""
from __future__ import annotations

import re

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import majority, numbered


def _revise(ctx: MASContext, r: int, solution: str) -> str:
    review = ctx.agent("reviewer", r, f"{ctx.task}\n\nSolution:\n{solution}\n\nCheck each step. Reply CORRECT if "
                       "the solution is right; otherwise describe the errors.", system="You are a strict reviewer.")
    if review.strip().upper().startswith("CORRECT"):
        return solution
    return ctx.agent("reviser", r, f"{ctx.task}\n\nSolution:\n{solution}\n\nReview:\n{review}\n\nWrite the corrected "
                     "solution.")


class AFlow:
    """The workflow AFlow finds for math: generate k -> self-consistency ensemble -> review/revise passes."""

    name, family = "aflow", "graph"

    def __init__(self, k: int = 3, review_passes: int = 1) -> None:
        self.k, self.review_passes = k, review_passes

    def _generate(self, ctx: MASContext) -> str:
        sols = [ctx.agent(f"generator_{i}", 0, ctx.task) for i in range(self.k)]
        pick = ctx.agent("sc_ensemble", 0, f"{ctx.task}\n\n{numbered(sols, 'Solution')}\n\nWhich solution's answer is "
                         "most consistent with the others? Reply <choice>n</choice>.", system="You compare solutions.")
        m = re.search(r"<choice>\s*(\d+)\s*</choice>", pick)
        idx = int(m.group(1)) - 1 if m else -1
        return sols[idx] if 0 <= idx < len(sols) else majority(sols)

    def solve(self, ctx: MASContext) -> str:
        solution = ctx.iteration(0, self._generate)
        for r in range(1, self.review_passes + 1):
            solution = ctx.iteration(r, lambda c, r=r, s=solution: _revise(c, r, s))
        return solution


OPERATORS = ("CoT", "SelfRefine", "SC", "Debate", "EarlyExit")


class MaAS:
    """MaAS: a controller samples a query-dependent operator chain from the supernet, then runs it layer by layer."""

    name, family = "maas", "graph"

    def __init__(self, max_layers: int = 3) -> None:
        self.max_layers = max_layers

    def plan(self, ctx: MASContext) -> list[str]:
        out = ctx.agent("controller", 0, f"Task:\n{ctx.task}\n\nChoose up to {self.max_layers} operators, in order, "
                        f"from {list(OPERATORS)}; harder tasks deserve more. Reply <operators>A, B</operators>.",
                        system="You design agentic workflows.")
        m = re.search(r"<operators>(.*?)</operators>", out, re.DOTALL)
        ops = [o.strip() for o in (m.group(1).split(",") if m else []) if o.strip() in OPERATORS]
        ops = ops[: self.max_layers]
        if "EarlyExit" in ops:
            ops = ops[: ops.index("EarlyExit")]
        return ops or ["CoT"]  # an empty or unparseable plan runs the cheapest operator

    def _layer(self, ctx: MASContext, r: int, op: str, solution: str) -> str:
        if op == "CoT" or not solution:
            return ctx.agent(f"cot_{r}", r, ctx.task if not solution else f"{ctx.task}\n\nDraft:\n{solution}")
        if op == "SelfRefine":
            return _revise(ctx, r, solution)
        if op == "SC":
            return majority([solution] + [ctx.agent(f"sc_{r}_{i}", r, ctx.task) for i in range(2)])
        opp = ctx.agent(f"debate_{r}", r, f"{ctx.task}\n\nAnother agent says:\n{solution}\n\nArgue for the best answer.")
        return majority([solution, opp, ctx.agent(f"debate_judge_{r}", r, f"{ctx.task}\n\n{numbered([solution, opp])}"
                                                   "\n\nGive the final solution.")])

    def solve(self, ctx: MASContext) -> str:
        solution = ""
        for r, op in enumerate(self.plan(ctx), start=1):
            solution = ctx.iteration(r, lambda c, r=r, op=op, s=solution: self._layer(c, r, op, s))
        return solution
