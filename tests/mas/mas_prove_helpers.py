"""A scripted model that plays every MAS-ProVe role; the solver's correctness is controllable."""

import ast
import itertools
import json
import random
import re
import threading
import time

from jaxlab.llm import ScriptedClient

ADAS_CODE = json.dumps(
    {
        "thought": "one careful solver",
        "name": "Careful solver",
        "code": (
            "async def forward(self, taskInfo):\n    agent = LLMAgentBase(['thinking', 'answer'], 'Careful Agent')\n"
            "    thinking, answer = await agent([taskInfo], 'Solve step by step.')\n    return answer\n"
        ),
    }
)
ZERO_CODE = "```python\ndef forward(task):\n    return cot(task)\n```"


def make_client(
    gold: str,
    right_every: int = 1,
    judge: str = "good",
    code: str | None = None,
    by_seed: bool = False,
    jitter_s: float = 0.0,
) -> ScriptedClient:
    """Solver replies are right on every ``right_every``-th call (``by_seed``: when the request's seed is
    divisible by ``right_every``, so replies depend only on the request); judges prefer the gold answer.
    ``jitter_s`` sleeps a random time per call so thread interleavings differ between runs."""
    counter, lock = itertools.count(), threading.Lock()
    right = f"so the answer is \\boxed{{{gold}}}"

    def current(text):  # judge only the candidate step (the last answer shown), not the verified trajectory
        return "so the answer is" + text.rsplit("so the answer is", 1)[-1]

    def responder(req):
        if jitter_s:
            time.sleep(random.uniform(0, jitter_s))
        system = req.messages[0]["content"]
        prompt = req.messages[-1]["content"]
        if "impartial judge" in system and judge == "garbage":
            return "I like them all."
        if "<ranking>" in system:
            cands = re.split(r"<\|Candidate \d+ Response\|>", prompt)[1:]
            order = sorted(range(len(cands)), key=lambda i: right not in current(cands[i]))
            return "Explanation...\n<ranking>" + ",".join(str(i + 1) for i in order) + "</ranking>"
        if "Verdict:" in system:
            cands = re.split(r"\[The Start of Assistant [A-Z]'s Answer\]", prompt)[1:]
            best = next((i for i, c in enumerate(cands) if right in current(c)), 0)
            return f"Explanation: candidate [A] is sloppy.\nVerdict: [{chr(65 + best)}]"
        if "impartial judge of solutions" in system:
            return f"<score>{9 if right in current(prompt) else 2}</score>"
        if "outcome reward model" in system:
            return f"<reward>{0.9 if right in current(prompt) else 0.1}</reward>"
        if "process reward model" in system:
            steps = prompt.split("steps):\n", 1)[1].split("<extra_0>")[:-1]
            return (
                "<step_rewards>"
                + ", ".join("0.9" if right in current(st) else "0.1" if "boxed" in st else "0.6" for st in steps)
                + "</step_rewards>"
            )
        if "summarization assistant" in system:  # keeps the last answer, as the authors' summariser must
            return "summary: " + current(prompt.split("Context: ", 1)[1])
        if "strict reviewer" in system:
            return "PASS"
        if "Python programmer" in system:
            return f"```python\ndef solve():\n    return {gold!r}\n```"
        if "for consistency" in system:
            return "<solution_letter>A</solution_letter>"
        if "Please choose the best 2 solutions" in prompt:  # DyLAN's listwise ranker (a user turn only)
            return "[[1, 2]]"
        if "verify solutions" in system:
            return "<choice>1</choice>"
        if "WELL-FORMED JSON object" in system:  # the ADAS meta agent
            return code or ADAS_CODE
        if "multi-agent system designer" in system:
            return code or ZERO_CODE
        if "Reply EXACTLY with the following JSON format" in system:  # an ADAS agent: every field the solver's text
            fields = ast.literal_eval(system.split("JSON format.\n", 1)[1].split("\n", 1)[0])
            return json.dumps({k: solver(req) for k in fields})
        return solver(req)

    def solver(req):
        if by_seed:
            return right if req.seed % right_every == 0 else f"so the answer is \\boxed{{-{req.seed % 7}}}"
        with lock:
            k = next(counter)
        return right if k % right_every == right_every - 1 else "so the answer is \\boxed{-1}"

    return ScriptedClient(responder=responder)
