"""Code-based frameworks: the sandboxed runner of generated agent systems, and MAS-Zero.

ADAS (archive search over a validation split) lives in :mod:`experiments.mas_prove.frameworks.adas`.

A meta agent writes Python; it runs in :mod:`jaxlab.sandbox` (time + memory
limits, no network).  Generated code reaches the model only through
``rpc(...)`` back into this process, where each call is a ``ctx.agent`` turn,
so agent-level verification hooks into generated systems too.  A crash or
hang of the generated system is recorded and scored, never raised.
"""

from __future__ import annotations

import json
import re

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import majority, numbered
from jaxlab.sandbox import run_python

_HARNESS = """
import json as _json
def call_agent(instruction, role="solver"):
    return rpc("call_agent", instruction=str(instruction), role=str(role))
{blocks}
{code}
print("__RESULT__" + _json.dumps(str(forward({task!r}))))
"""
_BLOCKS = "\n".join(
    f"def {b}(task):\n    return rpc({b!r}, instruction=str(task))" for b in ("cot", "sc", "reflexion", "debate")
)


def extract_code(text: str) -> str:
    blocks = re.findall(r"```(?:python)?\s*\n(.*?)```", text, re.DOTALL)
    return blocks[-1] if blocks else text


def run_generated(ctx: MASContext, r: int, code: str, blocks: bool, timeout_s: float = 120.0) -> tuple[bool, str]:
    """Execute generated ``forward(task)``; returns (ok, answer-or-error)."""

    def handler(method: str, params: dict) -> str:
        instr = params["instruction"]
        if method == "call_agent":
            return ctx.agent(params.get("role", "solver"), r, instr)
        if blocks and method == "cot":
            return ctx.agent("cot", r, instr)
        if blocks and method == "sc":
            return majority([ctx.agent(f"sc_{i}", r, instr) for i in range(3)])
        if blocks and method == "reflexion":
            first = ctx.agent("reflexion", r, instr)
            critique = ctx.agent(
                "reflexion_critic",
                r,
                f"{instr}\n\nSolution:\n{first}\n\nList any errors.",
                system="You are a strict reviewer.",
            )
            return ctx.agent(
                "reflexion", r, f"{instr}\n\nSolution:\n{first}\n\nCritique:\n{critique}\n\nFinal solution:"
            )
        if blocks and method == "debate":
            a, b = ctx.agent("debater_0", r, instr), ctx.agent("debater_1", r, instr)
            return ctx.agent("debate_judge", r, f"{instr}\n\n{numbered([a, b])}\n\nGive the best final solution.")
        raise ValueError(f"unknown rpc method {method!r}")

    program = _HARNESS.format(blocks=_BLOCKS if blocks else "", code=code, task=ctx.task)
    res = run_python(program, timeout_s=timeout_s, memory_mb=512, rpc=handler)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("__RESULT__")]
    if res.ok and lines:
        return True, json.loads(lines[-1][len("__RESULT__") :])
    return False, f"generated system failed ({res.status}): {res.stderr.strip()[-500:]}"


ZERO_META = """Decompose the task into sub-tasks and solve it with these building blocks (each returns text with a
\\boxed{{}} answer): cot(task), sc(task), reflexion(task), debate(task).  Write `forward(task: str) -> str` that
calls them (passing sub-task descriptions that include the needed facts) and returns the final response, answer in
\\boxed{{}}. Standard library only, no network. Reply with one ```python code block.
{feedback}"""


class MASZero:
    """MAS-Zero: meta-level design from building blocks, run, self-verify, redesign; a final meta verification."""

    name, family = "mas_zero", "code"

    def __init__(self, iterations: int = 2) -> None:
        self.iterations = iterations

    def _design(self, ctx: MASContext, r: int, history: list[dict]) -> dict:
        feedback = "\n".join(f"Design {i + 1} gave: {h['result'][:300]}" for i, h in enumerate(history))
        text = ctx.agent(
            "meta_designer",
            r,
            f"Task:\n{ctx.task}\n\n"
            + ZERO_META.format(feedback=("Earlier attempts (improve on them):\n" + feedback) if feedback else ""),
            system="You are a multi-agent system designer.",
        )
        code = extract_code(text)
        ok, result = run_generated(ctx, r, code, blocks=True)
        return {"code": code, "ok": ok, "result": result}

    def solve(self, ctx: MASContext) -> str:
        history: list[dict] = []
        for r in range(self.iterations):
            history.append(
                ctx.iteration(
                    r,
                    lambda c, r=r, h=list(history): self._design(c, r, h),
                    lambda d: f"```python\n{d['code']}\n```\nResult: {d['result']}",
                )
            )
        ran = [h["result"] for h in history if h["ok"]]
        if not ran:
            return ""
        if len(ran) == 1:
            return ran[0]
        pick = ctx.agent(
            "meta_verifier",
            self.iterations,
            f"{ctx.task}\n\n{numbered(ran, 'Candidate')}\n\nWhich candidate is correct? Reply <choice>n</choice>.",
            system="You verify solutions.",
        )
        m = re.search(r"<choice>\s*(\d+)\s*</choice>", pick)
        idx = int(m.group(1)) - 1 if m else -1
        return ran[idx] if 0 <= idx < len(ran) else majority(ran)
