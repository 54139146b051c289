"""Debate and DyLAN prompts as the MAS-ProVe authors run them on AIME (short templates, kept close to theirs).

Sources (Wang-ML-Lab/MAS-ProVe): ``mas/debate/prompts/aime24_prompts.py`` (``AIME24_DIRECT_PROMPT_GPT5``,
``AIME24_REFINE_PROMPT``) and ``mas/debate/llm_debate_tool_call.py::debate_refine`` (other agents as
``Agent {i}: ...``, ``i`` from 0); ``mas/dylan/code/AIME/prompt_lib_aime.py`` (roles, system prompt) and
``mas/dylan/code/MMLU/prompt_lib.py`` (``construct_message`` / ``construct_ranking_message``, qtype ``aime_qa``).

DyLAN on the other math benchmarks (MATH-500, GSM8K, MASBench) uses DyLAN's own MATH setting from the same
``prompt_lib.py`` / ``utils.py``: qtype ``math_exp``, ``SYSTEM_PROMPT_MATH`` and the question wrapped as
"Please solve the problem below.\nProblem: ...\nAnswer:".  Their wrapper is preceded by four worked MATH examples
(``COMPLEX_COT_EXAMPLES``); those are not copied here, so the system prompt's "Follow the given examples" has none
to follow.  The MAS-ProVe authors ran Debate only with AIME and GAIA prompts; Debate keeps the AIME ones everywhere.
"""

from __future__ import annotations

DEBATE_DIRECT = """You are a precise math problem solver. Solve the given math problem step by step:

QUESTION: {question}

You can freely reason in your response, please: \n1. include the thinking process in your response, in a detailed \
and extended manner, and after that, \n2. enclose the final answer within <answer></answer> tags (pure number without \
units and explanations)
"""

DEBATE_REFINE = """You are a precise math problem solver. Using the solutions from other agents as additional \
information, refine your original solution to the given math problem, step-by-step.

**QUESTION:** {question}
**ORIGINAL SOLUTION:** {original}
**OTHER AGENTS' SOLUTIONS:** {others}

You can freely reason in your response, but please enclose the final, numerical answer within <answer></answer> tags \
(pure number only, without units or explanations).
"""


def debate_others(responses: list[str]) -> str:
    return "\n".join(f"Agent {i}: {r}" for i, r in enumerate(responses))


DYLAN_ROLES = {
    "Assistant": "You are a super-intelligent AI assistant capable of performing tasks more effectively than humans.",
    "Mathematician": "You are a mathematician. You are good at math games, arithmetic calculation, and long-term "
    "planning.",
    "AlgebraExpert": "You are an expert in the field of algebra, skilled at solving equations, understanding variables "
    "and adept at the logical manipulation of symbols.",
    "CountingProbabilitySpecialist": "You specialize in the realm of counting and probability, able to calculate "
    "complex events with accuracy, analyze data and predict outcomes.",
    "GeometryWizard": "You are a wizard of geometry, deeply familiar with shapes, dimensions, and properties, and "
    "capable of theorizing spatial relationships and understanding geometric proofs.",
    "IntermediateAlgebraMaestro": "You are a maestro of intermediate algebra, adept at handling polynomials, quadratic "
    "equations, and dealing with complex numerical relationships.",
    "NumberTheoryScholar": "As a scholar in number theory, you excel in studying properties and relationships of "
    "numbers. Prime numbers, divisibility, and mathematical patterns are within your area of "
    "expertise.",
    "PrealgebraProdigy": "You are a prodigy in prealgebra, skillful at understanding mathematical principles and "
    "fundamentals like operations, fractions, and basic equations.",
    "PrecalculusGuru": "You are a guru in precalculus, proficient at handling functions, limits, rates of change, and "
    "confidently preparing for the concepts of calculus.",
}
DYLAN_AIME_ROLES = ("Mathematician", "AlgebraExpert", "GeometryWizard", "NumberTheoryScholar")  # exp_aime_dylan.sh
DYLAN_SYSTEM = """It's a debate. Explain your reasons at each round thoroughly.
Answer the mathematics problem. AIME answers are integers from 0 to 999. Put your final answer in <answer></answer> tags."""


DYLAN_SYSTEM_MATH = (
    "It's a debate. Explain your reasons at each round thoroughly.\nFollow the given examples and "
    "answer the mathematics problem."
)
QTYPES = ("aime_qa", "math_exp")


def dylan_qtype(benchmark: str) -> str:
    """``aime_qa`` on AIME (and when the benchmark is unknown), DyLAN's ``math_exp`` on the other math sets."""
    return "aime_qa" if benchmark in ("", "aime24", "aime25") else "math_exp"


def _check(qtype: str) -> None:
    if qtype not in QTYPES:
        raise ValueError(f"qtype: expected one of {list(QTYPES)}, got {qtype!r}")


def dylan_system(role: str, qtype: str = "aime_qa") -> str:
    _check(qtype)
    return f"{DYLAN_ROLES[role]}\n{DYLAN_SYSTEM if qtype == 'aime_qa' else DYLAN_SYSTEM_MATH}"


def _math_question(question: str) -> str:
    return f"Please solve the problem below.\nProblem: {question}\nAnswer:"


def dylan_message(formers: list[str], question: str, qtype: str = "aime_qa") -> str:
    """``construct_message(formers, question, qtype)``: alone in round 0, else rate the others' solutions."""
    _check(qtype)
    if qtype == "math_exp":
        if not formers:
            return _math_question(question)
        shown = "".join(f"\n\nAgent solution {k}: ```{r}```" for k, r in enumerate(formers, 1))
        return (
            "Follow the given examples and answer the mathematics problem.\n\n"
            + _math_question(question)
            + "\n\nThese are the solutions to the problem from other agents: "
            + shown
            + "\n\nUsing the "
            "reasoning from other agents as additional advice with critical thinking, can you give an updated "
            "answer? Examine your solution and that other agents step by step. Notice that their answers might "
            "be all wrong. Along with the answer, give a score ranged from 1 to 5 to the solutions of other "
            f"agents. Put all {len(formers)} scores in the form like [[1, 5, 2, ...]]."
        )
    if not formers:
        return (
            f"Solve this math problem:\n\n{question}\n\nRemember: AIME answers are integers from 0 to 999. Put "
            "your final answer in <answer></answer> tags."
        )
    shown = "".join(f"\n\nSolution {k}: ```{r}```" for k, r in enumerate(formers, 1))
    return (
        f"Solve this math problem:\n\n{question}\n\nThese are solutions from other mathematicians: {shown}\n\nUsing "
        "the other solutions as additional insight, can you provide an updated answer? Think critically - the "
        "other solutions might contain errors. Put your final answer in <answer></answer> tags. Along with the "
        "answer, give a score ranged from 1 to 5 to the solutions of other agents. Put all "
        f"{len(formers)} scores in the form like [[1, 5, 2, ...]]."
    )


def dylan_ranking_message(responses: list[str], question: str, qtype: str = "aime_qa") -> str:
    """``construct_ranking_message(responses, question, qtype)``: the listwise ranker picks the best two."""
    _check(qtype)
    if qtype == "math_exp":
        shown = "".join(f"\n\nAgent solution {k}: ```{r}```" for k, r in enumerate(responses, 1))
        return (
            "Follow the given examples and answer the mathematics problem.\n\n"
            + _math_question(question)
            + "\n\nThese are the solutions to the problem from other agents: "
            + shown
            + "\n\nPlease choose "
            "the best 2 solutions and think step by step. Put your answer in the form like [1,2] or [3,4] at the "
            "end of your response."
        )
    shown = "".join(f"\n\nSolution {k}: ```{r}```" for k, r in enumerate(responses, 1))
    return (
        f"Here is the math problem:\n{question}\n\nThese are the solutions from other mathematicians: {shown}\n\n"
        "Please choose the best 2 solutions based on mathematical rigor and correctness. Put your answer in the "
        "form like [[1,2]] or [[3,4]] at the end of your response."
    )
