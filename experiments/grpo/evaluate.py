"""Greedy accuracy on held-out generated problems and on real GSM8K / MATH-500 rows (evaluation only).

The real rows are read from ``../shared/data`` (or ``$JAXLAB_SHARED_DATA``) when present; a fresh
clone without them reports only the generated held-out set. Nothing here is ever trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from experiments.grpo.rewards.math import answers_equal, extract_answer
from experiments.grpo.tasks import INSTRUCTION, Task
from jaxlab.generate import generate


def shared_data_dir() -> Path | None:
    env = os.environ.get("JAXLAB_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return next((p for p in candidates if (p / "gsm8k").is_dir()), None)


def real_math_rows(name: str, n: int) -> list[Task]:
    """The first ``n`` rows of ``gsm8k`` or ``math500`` as tasks; [] when the data is absent."""
    root = shared_data_dir()
    if root is None or n <= 0:
        return []
    path = root / {"gsm8k": "gsm8k", "math500": "math500"}[name] / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n]]
    if name == "gsm8k":
        return [
            Task(r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", ""), "gsm8k", "eval")
            for r in rows
        ]
    return [Task(r["problem"], r["answer"], "math500", "eval") for r in rows]


def greedy_texts(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Any],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    encode: Callable[[Any], list[int]] | None = None,
) -> list[str]:
    """Greedy completions of ``tasks`` (their chat messages through ``tokenizer``, or ``encode`` for a byte model)."""
    texts: list[str] = []
    for start in tqdm(
        range(0, len(tasks), batch_size), desc=f"eval greedy ({len(tasks)} problems)", unit="batch", leave=False
    ):
        chunk = tasks[start : start + batch_size]
        prompts = [encode(t) for t in chunk] if encode else [t.messages() for t in chunk]
        out = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0)
        texts += (
            out.texts
            if tokenizer is not None
            else [bytes(x for x in ids if 0 < x < 256).decode("utf-8", "replace") for ids in out.token_ids]
        )
    return texts


def accuracy(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Task],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    encode: Callable[[Task], list[int]] | None = None,
) -> dict[str, float]:
    """Greedy pass@1 with math-verify equivalence; also the fraction that gave any answer."""
    if not tasks:
        return {"n": 0}
    correct = answered = 0
    texts = greedy_texts(model, tokenizer, tasks, max_new_tokens=max_new_tokens, batch_size=batch_size, encode=encode)
    for task, text in zip(tasks, texts):
        pred = extract_answer(text)
        answered += pred is not None
        correct += pred is not None and answers_equal(pred, task.answer)
    return {"n": len(tasks), "accuracy": correct / len(tasks), "answered": answered / len(tasks)}


__all__ = ["INSTRUCTION", "accuracy", "greedy_texts", "real_math_rows", "shared_data_dir"]
