"""The AFlow / MaAS operator set, each operator a few ``ctx.agent`` turns (so every hook level sees them).

Custom, AnswerGenerate, GenerateCoT, MultiGenerateCoT, ScEnsemble (answer letters A, B, ...), Programmer
(writes ``solve()``, runs it in :mod:`jaxlab.sandbox`, up to 3 attempts with the error fed back), SelfRefine,
Review (pass/fail + feedback) and Revise.  The prompts restate the operators' instructions in this repo's
words.
"""
from __future__ import annotations

import re

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import majority
from jaxlab.sandbox import run_python

PROGRAMMER = """Write complete, self-contained Python (standard library only) that computes the answer to this \
problem. Define a function `solve()` that takes no arguments and returns the final result as a basic type \
(int, float or str). Reply with one ```python code block.

Problem: {problem}
Other analysis: {analysis}{feedback}"""
SC_ENSEMBLE = """Question: {problem}

Several solutions were generated:
{solutions}

Identify the answer that appears most often across these solutions (the most consistent one). Explain briefly, \
then give only the letter of the most consistent solution as <solution_letter>X</solution_letter>."""


def custom(ctx: MASContext, r: int, text: str, instruction: str, name: str = "Custom") -> str:
    return ctx.agent(name, r, f"{instruction}\n\n{text}")


def answer_generate(ctx: MASContext, r: int, problem: str) -> str:
    return ctx.agent("AnswerGenerate", r, f"{problem}\n\nThink step by step, then give the final answer in \\boxed{{}}.")


def multi_generate(ctx: MASContext, r: int, problem: str, k: int = 3) -> list[str]:
    return [ctx.agent("MultiGenerateCoT", r, f"{problem}\n\nSolve step by step; box the final answer.")
            for _ in range(k)]


def sc_ensemble(ctx: MASContext, r: int, problem: str, solutions: list[str]) -> str:
    """Universal self-consistency: the model names the most consistent solution; unusable reply -> vote."""
    if len(solutions) == 1:
        return solutions[0]
    letters = [chr(65 + i) for i in range(len(solutions))]
    body = "\n\n".join(f"{x}:\n{s}" for x, s in zip(letters, solutions))
    out = ctx.agent("ScEnsemble", r, SC_ENSEMBLE.format(problem=problem, solutions=body),
                    system="You compare solutions for consistency.")
    m = re.search(r"<solution_letter>\s*([A-Z])\s*</solution_letter>", out)
    if m and m.group(1) in letters:
        return solutions[letters.index(m.group(1))]
    ctx.stats["sc_ensemble_vote_fallbacks"] += 1
    return majority(solutions)


def _code(text: str) -> str:
    blocks = re.findall(r"```(?:python)?\s*\n(.*?)```", text, re.DOTALL)
    return blocks[-1] if blocks else text


def programmer(ctx: MASContext, r: int, problem: str, analysis: str = "None", attempts: int = 3,
               timeout_s: float = 30.0) -> dict:
    """Generate ``solve()``, run it in the sandbox; on an error, regenerate with the error shown."""
    feedback, code, output = "", "", ""
    for _ in range(attempts):
        reply = ctx.agent("Programmer", r, PROGRAMMER.format(problem=problem, analysis=analysis, feedback=feedback),
                          system="You are a professional Python programmer.")
        code = _code(reply)
        res = run_python(f"{code}\n\nprint('__OUT__' + repr(solve()))\n", timeout_s=timeout_s, memory_mb=512)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("__OUT__")]
        if res.ok and lines:
            out = lines[-1][len("__OUT__"):]
            return {"code": code, "output": out.strip("'\""), "ok": True}
        output = f"{res.status}: {res.stderr.strip()[-400:]}"
        feedback = f"\n\nYour previous code failed.\nCode:\n{code}\n\nStatus: {output}"
    ctx.stats["programmer_failures"] += 1
    return {"code": code, "output": output, "ok": False}


def self_refine(ctx: MASContext, r: int, problem: str, solution: str) -> str:
    return ctx.agent("SelfRefine", r, f"{problem}\n\nSolution:\n{solution}\n\nFind any error in this solution and "
                     "write an improved, complete solution with the final answer boxed.")


def review(ctx: MASContext, r: int, problem: str, solution: str) -> dict:
    """Pass/fail with feedback: a reply starting ``PASS`` passes; anything else is feedback to act on."""
    out = ctx.agent("Review", r, f"{problem}\n\nSolution:\n{solution}\n\nReview the solution step by step. Reply "
                    "PASS if it is correct; otherwise reply FAIL and explain the errors.",
                    system="You are a strict reviewer.")
    return {"ok": out.strip().upper().startswith("PASS"), "feedback": out}


def revise(ctx: MASContext, r: int, problem: str, solution: str, feedback: str) -> str:
    return ctx.agent("Revise", r, f"{problem}\n\nSolution:\n{solution}\n\nReview feedback:\n{feedback}\n\nWrite the "
                     "corrected solution with the final answer boxed.")
