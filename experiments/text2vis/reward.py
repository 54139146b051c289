"""The RL-Text2Vis reward, as the released trainer computes it (``scripts/rl_text2vis.py``).

Two reward functions, summed with weight 1 each by TRL there (and by the GRPO runner here):

* **format**: 1 if the whole reply is JSON with string ``answer`` and ``code`` and the stripped code
  ends with ``plt.show()``, else 0 (:func:`experiments.text2vis.parse.format_ok`).
* **main** = 0.5 x answer + 0.25 x code + 0.25 x visual, where

  - answer = 0.6 x shape + 0.4 x [shape >= 0.999]; shape is the text judge's ``answer_score``; when
    that is 0, and both the gold and the extracted answer (``%`` removed) parse as one float each,
    shape = 1 - sum min(1, |(x1 - x2) / (x1 + 1e-15)|) / max(n1, n2) over a Hungarian matching
    (``scipy.optimize.linear_sum_assignment``; with one number a side, 1 - the relative error);
  - code = 1 if the chart executed (a PNG exists) and the judge's ``code_intent_score`` is exactly
    0.5, 0.5 if one holds, else 0;
  - visual = 1 if readability and correctness are both >= 4, 0.5 if both >= 3, 0.25 if either is
    >= 3, else 0; without a chart both scores are 0 and no visual judge is called.

The answer and code are read by the ``json`` parser by default (``parser: released`` restores the
released regexes, which cut a JSON-list answer at its first escaped quote: :mod:`~experiments.text2vis.parse`).
Kept as released: shape is not clipped (a judge replying ``answer_score: 5`` gives shape 5), a text
judge reply that does not parse zeroes both its scores, the numeric fallback also replaces a
legitimate judge 0, and any exception while scoring a sample gives main reward 0.  The differences
are only where the released code is unsafe: every sample runs in its own sandbox directory (no
stale PNG), chart code never runs in the trainer's process, and every fallback is counted.
Every part of every sample is kept in :attr:`RLText2VisReward.last_parts` and its means are logged
per GRPO step as ``rewards/rl_text2vis/<part>``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from experiments.text2vis.execute import ChartRun, execute_chart
from experiments.text2vis.judges import (
    JudgeStats,
    ProgrammaticChartJudge,
    ProgrammaticTextJudge,
    TextJudge,
    VisualJudge,
)
from experiments.text2vis.parse import PARSERS, format_ok, parse_output
from experiments.text2vis.tasks import Text2VisTask

__all__ = [
    "RLText2VisReward",
    "RewardParts",
    "answer_reward",
    "code_reward",
    "configure",
    "current",
    "hungarian_score",
    "numeric_fallback",
    "rl_text2vis",
    "rl_text2vis_format",
    "visual_reward",
]

_log = logging.getLogger(__name__)
ALPHA = 0.6


def _distance(x1: float, x2: float) -> float:
    # Python floats on purpose: x1 = -1e-15 raises ZeroDivisionError (the fallback is then skipped, as
    # released) and a NaN ratio gives min(1, nan) = 1, which numpy's minimum would not
    return min(1, abs((x1 - x2) / (x1 + 1e-15)))


def hungarian_score(gold: Sequence[float], pred: Sequence[float]) -> float:
    """1 - (cost of the best one-to-one matching of relative errors) / max(len(gold), len(pred))."""
    cost = np.array([[_distance(a, b) for b in pred] for a in gold], dtype=np.float64)
    rows, cols = linear_sum_assignment(cost)
    return float(1 - cost[rows, cols].sum() / max(len(gold), len(pred)))


def _floats(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(str(v).replace("%", "")))
        except ValueError:
            continue
    return out


def numeric_fallback(gold: str, pred: str | None) -> float | None:
    """The released two-step fallback's score, or None when it does not apply (or raises there)."""
    g, p = _floats([gold]), _floats([pred])
    if not (g and p):
        return None
    try:
        return hungarian_score(g, p)
    except (ZeroDivisionError, ValueError):
        return None


def answer_reward(shape: float) -> float:
    return ALPHA * shape + (1 - ALPHA) * (1.0 if shape >= 0.999 else 0.0)


def code_reward(executable: float, intent: float) -> float:
    if executable == 0.5 and intent == 0.5:
        return 1.0
    if executable == 0.5 or intent == 0.5:
        return 0.5
    return 0.0


def visual_reward(readability: float, correctness: float) -> float:
    if readability >= 4 and correctness >= 4:
        return 1.0
    if readability >= 3 and correctness >= 3:
        return 0.5
    if readability >= 3 or correctness >= 3:
        return 0.25
    return 0.0


@dataclass(frozen=True)
class RewardParts:
    """Every number behind one sample's reward (one row of the per-sample log)."""

    format: float
    main: float
    answer_score: float = 0.0
    numeric_fallback: bool = False
    shape: float = 0.0
    binary: float = 0.0
    answer: float = 0.0
    executable: float = 0.0
    code_intent: float = 0.0
    code: float = 0.0
    readability: float = 0.0
    correctness: float = 0.0
    visual: float = 0.0
    status: str = ""
    code_format: str | None = None
    text_parsed: bool = True
    error: str | None = None


class RLText2VisReward:
    """Scores replies to :class:`Text2VisTask` s; judges default to the programmatic ones.

    ``executor`` runs chart code (the sandboxed :func:`execute_chart`; tests pass a stand-in).
    ``parser``: how the answer and code are read (:data:`~experiments.text2vis.parse.PARSERS`);
    ``released`` is the released trainer's regex extractor, ``json`` (default) reads the JSON object
    and does not cut list answers at their first escaped quote.
    """

    def __init__(
        self,
        text_judge: TextJudge | None = None,
        visual_judge: VisualJudge | None = None,
        *,
        timeout_s: float = 15.0,
        memory_mb: int = 1024,
        max_workers: int = 2,
        executor: Callable[..., ChartRun] = execute_chart,
        parser: str = "json",
    ) -> None:
        if parser not in PARSERS:
            raise ValueError(f"parser: expected one of {PARSERS}, got {parser!r}")
        self._execute, self.parser = executor, parser
        self.text_judge = text_judge or ProgrammaticTextJudge()
        self.visual_judge = visual_judge or ProgrammaticChartJudge()
        self.timeout_s, self.memory_mb, self.max_workers = timeout_s, memory_mb, max_workers
        self.stats = JudgeStats()
        self.last_parts: list[RewardParts] = []
        self._lock = threading.Lock()

    def score_one(self, task: Text2VisTask, text: str) -> RewardParts:
        """One reply's parts; never raises (an internal error is main 0, counted and kept in ``error``)."""
        fmt = 1.0 if isinstance(text, str) and format_ok(text)[0] else 0.0
        try:
            return self._score(task, text, fmt)
        except Exception as exc:  # released: any exception scores the sample 0
            self.stats.add("reward_errors")
            _log.warning("rl_text2vis: scoring raised, main reward 0: %r", exc)
            return RewardParts(format=fmt, main=0.0, status="reward_error", error=f"{type(exc).__name__}: {exc}")

    def _score(self, task: Text2VisTask, text: str, fmt: float) -> RewardParts:
        parsed = parse_output(text, self.parser)
        run = self._execute(parsed.code, task.table_csv, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        executable = 0.5 if run.ok else 0.0
        verdict = self.text_judge.judge(task, parsed.answer, parsed.code)
        answer_score, fell_back = verdict.answer_score, False
        if answer_score == 0:
            fb = numeric_fallback(task.answer, parsed.answer)
            if fb is not None:
                answer_score, fell_back = fb, True
        shape = answer_score
        binary = 1.0 if shape >= 0.999 else 0.0
        scores = self.visual_judge.score(task, run) if executable else None
        read, corr = (scores.readability, scores.correctness) if scores is not None else (0.0, 0.0)
        a, c, v = answer_reward(shape), code_reward(executable, verdict.code_intent_score), visual_reward(read, corr)
        return RewardParts(
            format=fmt,
            main=0.5 * a + 0.25 * c + 0.25 * v,
            answer_score=verdict.answer_score,
            numeric_fallback=fell_back,
            shape=float(shape),
            binary=binary,
            answer=a,
            executable=executable,
            code_intent=verdict.code_intent_score,
            code=c,
            readability=read,
            correctness=corr,
            visual=v,
            status=run.status,
            code_format=parsed.code_format,
            text_parsed=verdict.parsed,
        )

    def score_batch(self, tasks: Sequence[Text2VisTask], completions: Sequence[str]) -> list[RewardParts]:
        if len(tasks) != len(completions):
            raise ValueError(f"task: got {len(tasks)} tasks for {len(completions)} completions")
        for i, t in enumerate(tasks):
            if not isinstance(t, Text2VisTask):
                raise TypeError(f"task[{i}]: expected a Text2VisTask, got {type(t).__name__}")
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            parts = list(pool.map(self.score_one, tasks, completions))
        with self._lock:
            self.last_parts = parts
        return parts

    def fallback_counts(self) -> dict[str, int]:
        """Cumulative judge fallbacks and reward errors (what the released code turned into silent zeros)."""
        out = {f"text_{k}": v for k, v in self.text_judge.stats.snapshot().items()}
        out.update({f"visual_{k}": v for k, v in self.visual_judge.stats.snapshot().items()})
        out.update(self.stats.snapshot())
        return out


_NUMERIC = (
    "format",
    "main",
    "answer_score",
    "shape",
    "binary",
    "answer",
    "executable",
    "code_intent",
    "code",
    "readability",
    "correctness",
    "visual",
)


def step_metrics(parts: Sequence[RewardParts]) -> dict[str, float]:
    """Means of every part, fractions of execution statuses / code formats / fallbacks, for one step."""
    n = max(len(parts), 1)
    out = {k: float(np.mean([getattr(p, k) for p in parts])) if parts else float("nan") for k in _NUMERIC}
    out["numeric_fallback_frac"] = sum(p.numeric_fallback for p in parts) / n
    out["text_unparsed_frac"] = sum(not p.text_parsed for p in parts) / n
    for k, v in Counter(p.status for p in parts).items():
        out[f"status_{k}"] = v / n
    for k, v in Counter(p.code_format or "none" for p in parts).items():
        out[f"code_format_{k}"] = v / n
    return out


_current: RLText2VisReward | None = None  # built on first use: the default judges need no setup
_current_lock = threading.Lock()


def configure(reward: RLText2VisReward) -> RLText2VisReward:
    """Make ``reward`` the one the registered GRPO reward functions use (the runner calls this)."""
    global _current
    with _current_lock:
        _current = reward
    return reward


def current() -> RLText2VisReward:
    """The configured reward (programmatic judges unless :func:`configure` was called)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = RLText2VisReward()
        return _current


def _tasks(task: Sequence[Text2VisTask] | None, n: int, name: str) -> Sequence[Text2VisTask]:
    if task is None:
        raise ValueError(f"{name}: the examples need a 'task' field (the Text2VisTask of each prompt)")
    if len(task) != n:
        raise ValueError(f"{name}: got {len(task)} tasks for {n} completions")
    return task


def rl_text2vis(
    prompts: Sequence[str], completions: Sequence[str], *, task: Sequence[Text2VisTask] | None = None, **_: object
) -> tuple[list[float], dict[str, float]]:
    """GRPO reward: the released main reward per completion, with every part's step mean as info."""
    reward = current()
    parts = reward.score_batch(_tasks(task, len(completions), "rl_text2vis"), completions)
    info = step_metrics(parts)
    info.update({f"cum_{k}": float(v) for k, v in reward.fallback_counts().items()})
    return [p.main for p in parts], info


def rl_text2vis_format(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
    """GRPO reward: the released format reward (strict JSON, string fields, code ends with plt.show())."""
    return [1.0 if isinstance(c, str) and format_ok(c)[0] else 0.0 for c in completions]


def parts_dict(p: RewardParts) -> dict[str, Any]:
    return dataclasses.asdict(p)
