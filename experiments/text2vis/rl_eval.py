"""Held-out evaluation for the RL-Text2Vis run: greedy replies scored with the training reward.

The headline of the seed paper is execution success (78% -> 97% over the zero-shot base), so this
reports, per held-out task set, the fraction of replies that pass the strict format reward, that
contain extractable code, whose code executes and leaves a chart, and whose answer matches (the
reward's binary part), each with a Wilson 95% interval, plus the mean main reward and chart scores.
The benchmark metric proper (pass rate over the 0-5 judge scores) lives in t2v-data's metric.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import binomtest

from experiments.text2vis.reward import RLText2VisReward, RewardParts, parts_dict
from experiments.text2vis.tasks import Text2VisTask, build_messages, build_prompt
from jaxlab.generate import generate

__all__ = ["T2VCodec", "evaluate_policy", "summarize", "t2v_codec", "wilson"]


@dataclass(frozen=True)
class T2VCodec:
    """How the policy reads a Text2Vis task and writes text (chat template, or bytes for a tiny model)."""

    encode: Callable[[Text2VisTask], list[int]]
    decode: Callable[[list[int]], str]
    eos_id: int
    pad_id: int
    tokenizer: Any = None


def t2v_codec(tokenizer: Any) -> T2VCodec:
    """The released prompt (system + user turns) through the chat template; bytes of it when no tokenizer."""
    if tokenizer is None:

        def encode_bytes(task: Text2VisTask) -> list[int]:
            return list(build_prompt(task).encode("utf-8"))

        return T2VCodec(encode_bytes, lambda ids: bytes(t for t in ids if 0 < t < 256).decode("utf-8", "replace"), 0, 0)

    def encode(task: Text2VisTask) -> list[int]:
        text = tokenizer.apply_chat_template(build_messages(task), add_generation_prompt=True, tokenize=False)
        return tokenizer.encode(text, add_special_tokens=False)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return T2VCodec(
        encode, lambda ids: tokenizer.decode(ids, skip_special_tokens=True), tokenizer.eos_token_id, pad, tokenizer
    )


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval for k successes in n trials (scipy's binomtest)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


RATES = {
    "format_rate": lambda p: p.format == 1.0,
    "code_found_rate": lambda p: p.code_format is not None,
    "exec_rate": lambda p: p.executable > 0,
    "answer_rate": lambda p: p.binary == 1.0,
}


def summarize(parts: Sequence[RewardParts]) -> dict[str, Any]:
    """Rates with Wilson intervals, means of the reward and the chart scores (over executed charts too)."""
    n = len(parts)
    out: dict[str, Any] = {"n": n}
    for name, hit in RATES.items():
        k = sum(bool(hit(p)) for p in parts)
        out[name] = k / n if n else float("nan")
        out[f"{name}_ci95"] = wilson(k, n)
    for key in ("main", "answer", "code", "visual", "readability", "correctness"):
        out[f"mean_{key}"] = float(np.mean([getattr(p, key) for p in parts])) if n else float("nan")
    executed = [p for p in parts if p.executable > 0]
    for key in ("readability", "correctness"):
        out[f"mean_{key}_executed"] = float(np.mean([getattr(p, key) for p in executed])) if executed else None
    statuses: dict[str, int] = {}
    for p in parts:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    out["statuses"] = statuses
    return out


def evaluate_policy(
    model: Any,
    codec: T2VCodec,
    tasks: Sequence[Text2VisTask],
    reward: RLText2VisReward,
    log_path: str | Path | None = None,
    *,
    max_new_tokens: int = 160,
    batch_size: int = 16,
    prompt_bucket: int = 16,
) -> dict[str, Any]:
    """Greedy replies on ``tasks``, scored with ``reward``; every reply and its parts go to ``log_path``."""
    texts: list[str] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        out = generate(
            model,
            codec.tokenizer,
            [codec.encode(t) for t in chunk],
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            stop_token_ids=[codec.eos_id],
            pad_to_multiple=prompt_bucket,
        )
        texts += [codec.decode(list(ids)) for ids in out.token_ids]
    parts = reward.score_batch(list(tasks), texts)
    if log_path is not None:
        with open(log_path, "w") as f:
            for t, text, p in zip(tasks, texts, parts):
                f.write(json.dumps({"task_id": t.id, "kind": t.kind, "completion": text, **parts_dict(p)}) + "\n")
    summary = summarize(parts)
    by_kind: dict[str, list[RewardParts]] = {}
    for t, p in zip(tasks, parts):
        by_kind.setdefault(t.kind, []).append(p)
    summary["by_kind"] = {
        k: {"n": len(v), **{r: sum(bool(RATES[r](p)) for p in v) / len(v) for r in RATES}}
        for k, v in sorted(by_kind.items())
    }
    return summary
