"""The MAS-ProVe authors' verifier-side prompts, kept as they wrote them.

The verifier paradigms are compared *as the authors ran them*, so the judge,
FARE and summariser prompts follow the released servers word for word
(Wang-ML-Lab/MAS-ProVe, ``src/mas_proceval/servers/``); only the FARE prompt
is generalised from its hard-coded three answers to ``n`` (for ``n == 3`` it
renders exactly the authors' text, which a test pins).
"""

from __future__ import annotations

# server_judge.py, build_messages_for_judge (task types containing "qa" or "math").
JUDGE_SYSTEM = """Please act as an impartial judge and evaluate the quality of multiple responses provided by AI \
assistants to the user prompt displayed below. You will be given several candidate responses.

Your task is to rank these responses from best to worst based on their correctness, reasoning quality, and \
completeness. Consider:
- Correctness of the final answer
- Quality and clarity of reasoning
- Completeness of the solution
- Logical consistency

Be as objective as possible. Avoid any biases such as length or stylistic elements like formatting.

Before providing your ranking, think through the evaluation process and output your thoughts as an explanation.

After providing your explanation, you must output the ranking as a comma-separated list of candidate numbers \
(e.g., "2,1,3" means candidate 2 is best, candidate 1 is second, candidate 3 is worst). Please enclose your ranking \
in <ranking> and </ranking> tags."""


def judge_user(question: str, candidates: list[str]) -> str:
    """server_judge.py's ``PROMPT_RANKING`` after its ``.strip()`` (the 4-space indents are the authors')."""
    body = "\n\n".join(
        f"<|Candidate {i} Response|>\n{c}\n<|End of Candidate {i}|>" for i, c in enumerate(candidates, 1)
    )
    return f"<|User Prompt|>\n    {question}\n\n    {body}"


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def fare_system(n: int) -> str:
    """server_fare.py's ``PROMPT_RANKING_SYSTEM`` for ``n`` answers (verbatim at ``n == 3``)."""
    if not 2 <= n <= 26:
        raise ValueError(f"fare compares 2..26 answers, got {n}")
    letters = [chr(65 + i) for i in range(n)]
    given = [f"assistant {x}'s answer" for x in letters]
    given_text = given[0] + " and " + given[1] if n == 2 else ", ".join(given[:-1]) + ", and " + given[-1]
    outputs = " ".join(f"If assistant {x} is better, output [{x}]." for x in letters)
    return f"""Please act as an impartial judge and evaluate the quality of the responses provided by \
{_NUMBER_WORDS.get(n, str(n))} AI assistants to the user prompt displayed below. You will be given {given_text}. Your \
job is to determine which assistant's answer is better.
{outputs}

Here are some rules for evaluation
(1) When evaluating the assistants' answers, identify any mistakes or inaccurate information. Focus on the content \
each response and select the response that is logically sound and error free.
(2) If both responses contain inaccurate information, select the response that arrives at the correct response
(3) Avoid any biases, such as order of responses, length, or stylistic elements like formatting

Before outputting your final judgment, provide an explanation of your judgment. Your explanation should discuss why \
your chosen response is better based on the evaluation criteria. The explanation should concretely discuss strengths \
and weaknesses of both answers.
After outputting your explanation, provide your final judgment. Use the following format:
Explanation: Your explanation here
Verdict: Your final verdict"""


def fare_user(question: str, answers: list[str]) -> str:
    """server_fare.py's ``PROMPT_PAIRWISE`` (three answers there; one block per answer here)."""
    blocks = "\n\n".join(
        f"[The Start of Assistant {chr(65 + i)}'s Answer]\n{a}\n[The End of Assistant {chr(65 + i)}'s Answer]"
        for i, a in enumerate(answers)
    )
    return f"[User Question]\n{question}\n\n{blocks}"


# server_prm.py / server_rm.py / server_fare.py, SYSTEM_PROMPT (the RM/FARE copy formats the token budget; the PRM
# copy hard-codes 4096, which is the default here).
_SUMMARY_SYSTEM = """
You are a summarization assistant for multi-agent system processes.

Your task is to summarize the given context into a concise and informative summary.
The total length of the summary should be fewer than {max_context_length} tokens.

IMPORTANT PRINCIPLES:
- This is NOT style normalization.
- This is NOT reformatting to a fixed template.
- The cleaned solution should look like the SAME author wrote it,
  just more concisely.

STRICT REQUIREMENTS:
1) Faithfulness:
   - Do NOT change the meaning.
   - Do NOT change the final answer(s).
2) Reasoning preservation:
   - Keep ALL logical reasoning steps and ALL necessary mathematical derivations.
   - You may remove repeated steps, detours, or restatements ONLY if the reasoning remains intact.
3) Language & style preservation:
   - Preserve the original narrative tone (e.g. exploratory, explanatory, corrective).
   - Preserve structural choices used in the original solution
     (such as step labels, section headers, or paragraph structure),
     unless they are clearly redundant.
4) Formatting:
   - Do NOT convert narrative explanations into bullet fragments or terse notes.
   - Do NOT collapse structured explanations into formula-only derivations.
   - Keep LaTeX for mathematics.

Output ONLY the cleaned solution text. No extra commentary.
"""


def summary_system(max_context_length: int = 4096) -> str:
    return _SUMMARY_SYSTEM.format(max_context_length=max_context_length)


def summary_user(context: str) -> str:
    """The summariser's user turn (identical in the three servers, 4096 hard-coded there too)."""
    return (
        "Please summarize the given context into a concise and informative summary. The total length of the "
        f"summary should be fewer than 4096 tokens.\n\nContext: {context}"
    )
