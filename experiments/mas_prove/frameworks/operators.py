"""The AFlow / MaAS operator set, each operator a few ``ctx.agent`` turns (so every hook level sees them).

Custom, AnswerGenerate, GenerateCoT, MultiGenerateCoT, ScEnsemble (answer letters A, B, ...), Programmer
(writes ``solve()``, runs it in :mod:`jaxlab.sandbox`, up to 3 attempts with the error fed back), SelfRefine,
Review (pass/fail + feedback) and Revise.  Custom, Programmer (prompt and error feedback) and ScEnsemble (prompt
and lettering) are the authors' AIME operators verbatim; the others restate AFlow's instructions in this repo's
words.  The authors' Programmer never reaches its feedback (a NameError in its retry path makes tenacity rerun it
blind); here the error is fed back, as the code intends.
"""

from __future__ import annotations

import re

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import majority
from experiments.mas_prove.frameworks.graph_prompts import GENERATE_SOLUTION_PROMPT
from jaxlab.sandbox import run_python

# mas/aflow/workspace/AIME24/workflows/template/op_prompt.py (verbatim), then the output format that MetaGPT's
# code_fill / xml_fill modes ask for (a ```python block; XML field tags).
PROGRAMMER = """
You are a professional Python programmer. Your task is to write complete, self-contained code based on a given \
mathematical problem and output the answer. The code should include all necessary imports and dependencies, and be \
ready to run without additional setup or environment configuration.

Problem description: {problem}
Other analysis: {analysis}
{feedback}

Your code should:
1. Implement the calculation steps described in the problem.
2. Define a function named `solve` that performs the calculation and returns the result. The `solve` function should \
not require any input parameters; instead, it should obtain all necessary inputs from within the function or from \
globally defined variables.
3. `solve` function return the final calculation result.

Please ensure your code is efficient, well-commented, and follows Python best practices. The output should be \
limited to basic data types such as strings, integers, and floats. It is prohibited to transmit images or other file \
formats. The code output is intended for a text-based language model.
"""
SC_ENSEMBLE = """
Given the question described as follows: {problem}
Several solutions have been generated to address the given question. They are as follows:
{solutions}

Carefully evaluate these solutions and identify the answer that appears most frequently across them. This \
consistency in answers is crucial for determining the most reliable solution.

In the "thought" field, provide a detailed explanation of your thought process. In the "solution_letter" field, \
output only the single letter ID (A, B, C, etc.) corresponding to the most consistent solution. Do not include any \
additional text or explanation in the "solution_letter" field.
"""
CODE_FORMAT = "\nReply with the complete code in one ```python code block."
XML_FORMAT = "\nReply with each field in its XML tag: <thought>...</thought><solution_letter>...</solution_letter>"


def custom(ctx: MASContext, r: int, text: str, instruction: str, name: str = "Custom") -> str:
    """The authors' Custom: ``instruction + input``, concatenated as is."""
    return ctx.agent(name, r, instruction + text)


def answer_generate(ctx: MASContext, r: int, problem: str) -> str:
    return ctx.agent(
        "AnswerGenerate", r, f"{problem}\n\nThink step by step, then give the final answer in \\boxed{{}}."
    )


def multi_generate(ctx: MASContext, r: int, problem: str, k: int = 3) -> list[str]:
    """``k`` solutions, each ``GENERATE_SOLUTION_PROMPT + problem`` (MaAS's MultiGenerateCoT call)."""
    return [ctx.agent("MultiGenerateCoT", r, GENERATE_SOLUTION_PROMPT + problem) for _ in range(k)]


def sc_ensemble(ctx: MASContext, r: int, problem: str, solutions: list[str]) -> str:
    """Universal self-consistency: the model names the most consistent solution; unusable reply -> vote."""
    if len(solutions) == 1:
        return solutions[0]
    letters = [chr(65 + i) for i in range(len(solutions))]
    body = "".join(f"{x}: \n{s}\n\n\n" for x, s in zip(letters, solutions))  # the authors' solution_text
    out = ctx.agent(
        "ScEnsemble",
        r,
        SC_ENSEMBLE.format(problem=problem, solutions=body) + XML_FORMAT,
        system="You compare solutions for consistency.",
    )
    m = re.search(r"<solution_letter>\s*([A-Z])\s*</solution_letter>", out)
    if m and m.group(1) in letters:
        return solutions[letters.index(m.group(1))]
    ctx.stats["sc_ensemble_vote_fallbacks"] += 1
    return majority(solutions)


def _code(text: str) -> str:
    blocks = re.findall(r"```(?:python)?\s*\n(.*?)```", text, re.DOTALL)
    return blocks[-1] if blocks else text


def programmer(
    ctx: MASContext, r: int, problem: str, analysis: str = "None", attempts: int = 3, timeout_s: float = 30.0
) -> dict:
    """Generate ``solve()``, run it in the sandbox; on an error, regenerate with the error shown."""
    feedback, code, output = "", "", ""
    for _ in range(attempts):
        reply = ctx.agent(
            "Programmer",
            r,
            PROGRAMMER.format(problem=problem, analysis=analysis, feedback=feedback) + CODE_FORMAT,
            system="You are a professional Python programmer.",
        )
        code = _code(reply)
        res = run_python(f"{code}\n\nprint('__OUT__' + repr(solve()))\n", timeout_s=timeout_s, memory_mb=512)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("__OUT__")]
        if res.ok and lines:
            out = lines[-1][len("__OUT__") :]
            return {"code": code, "output": out.strip("'\""), "ok": True}
        output = f"{res.status}: {res.stderr.strip()[-400:]}"
        feedback = (
            f"\nThe result of the error from the code you wrote in the previous round:\nCode: {code}\n\n"
            f"Status: Error, {output}"
        )
    ctx.stats["programmer_failures"] += 1
    return {"code": code, "output": output, "ok": False}


def self_refine(ctx: MASContext, r: int, problem: str, solution: str) -> str:
    return ctx.agent(
        "SelfRefine",
        r,
        f"{problem}\n\nSolution:\n{solution}\n\nFind any error in this solution and "
        "write an improved, complete solution with the final answer boxed.",
    )


def review(ctx: MASContext, r: int, problem: str, solution: str) -> dict:
    """Pass/fail with feedback: a reply starting ``PASS`` passes; anything else is feedback to act on."""
    out = ctx.agent(
        "Review",
        r,
        f"{problem}\n\nSolution:\n{solution}\n\nReview the solution step by step. Reply "
        "PASS if it is correct; otherwise reply FAIL and explain the errors.",
        system="You are a strict reviewer.",
    )
    return {"ok": out.strip().upper().startswith("PASS"), "feedback": out}


def revise(ctx: MASContext, r: int, problem: str, solution: str, feedback: str) -> str:
    return ctx.agent(
        "Revise",
        r,
        f"{problem}\n\nSolution:\n{solution}\n\nReview feedback:\n{feedback}\n\nWrite the "
        "corrected solution with the final answer boxed.",
    )
