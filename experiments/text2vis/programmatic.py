"""Judges without a model: answer match, code intent, and chart scores from the executed figure's structure.

They stand in for the released trainer's text LLM judge and VLM judge when no endpoint is
available, and return the same kinds of numbers so the reward cannot tell them apart:
``answer_match`` -> the judge's ``answer_score`` (0 or 1), ``code_intent`` -> its
``code_intent_score`` (0 or 0.5), :class:`ProgrammaticChartJudge` -> readability and correctness as
integers 1-5 (0 and 0 when there is no chart, as the released code sets them without a PNG).

The chart judge compares the plotted values with the values the task's gold code plots (the gold
code is executed once per task in the same sandbox and cached), checks that axes are labelled and
the chart has a title, and that the chart type fits the question kind.  It is a proxy, coarser than
a VLM: it cannot see overlapping labels or colours, and it rewards exactly what it measures.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

from experiments.text2vis.execute import ChartRun, execute_chart
from experiments.text2vis.tasks import Text2VisTask

__all__ = [
    "KIND_TYPES",
    "JudgeStats",
    "ProgrammaticChartJudge",
    "VisualScores",
    "answer_match",
    "code_intent",
    "value_f1",
]

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
KIND_TYPES = {
    "trend": {"line", "bar"},
    "correlation": {"scatter", "line"},
    "extremum": {"bar", "barh", "line", "scatter"},
    "top_k": {"bar", "barh"},
    "comparison": {"bar", "barh", "line", "pie"},
    "aggregate": {"bar", "barh", "pie", "line"},
    "pct_change": {"bar", "barh", "line"},
    "text2vis": set(),  # published rows: only the gold chart's own type fits
}
"""Chart types that can show each question kind (besides the gold chart's type, which always fits)."""


class JudgeStats:
    """Thread-safe counts: calls, replies that did not parse (fallbacks), failed calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class VisualScores:
    """Readability and correctness on the VLM's scale (1-5; 0 when there is no chart)."""

    readability: float
    correctness: float


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.findall(text):
        try:
            out.append(float(m.replace(",", "")))
        except ValueError:
            continue
    return out


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    """Equal within 1% of the gold (or as a percentage of it: 0.25 vs 25%)."""
    return any(abs(x - b) <= max(rel * abs(b), 1e-9) for x in (a, a * 100.0, a / 100.0))


def _norm(text: str) -> str:
    text = re.sub(r"[^\w\s.%-]", " ", str(text).casefold())
    text = re.sub(r"\s+", " ", text).strip(" .")
    return re.sub(r"^(the|a|an) ", "", text)


def _scalar_match(pred: str, gold: str) -> bool:
    g_nums = _numbers(gold)
    g_is_number = len(g_nums) == 1 and re.fullmatch(r"[\s$€£%,.\d+\-eE]*", gold.strip()) is not None
    if g_is_number:
        p_nums = _numbers(pred)
        return bool(p_nums) and _close(p_nums[0], g_nums[0])
    p, g = _norm(pred), _norm(gold)
    if not g:
        return False
    return p == g or (re.search(rf"(?<!\w){re.escape(g)}(?!\w)", p) is not None and len(p) <= 3 * len(g) + 10)


def _as_list(text: str) -> list[str] | None:
    t = text.strip()
    if t.startswith("["):
        try:
            v = json.loads(t)
        except ValueError:
            v = None
        if isinstance(v, list):
            return [str(x) for x in v]
    return None


def answer_match(pred: str | None, gold: str) -> bool:
    """Programmatic answer match: numbers within 1% (or as percentages), else normalised text equality or
    containment; a JSON-list gold needs the same number of items, each matched by a distinct predicted item
    (in any order; the prediction may be a JSON list or a comma / semicolon / 'and' separated list)."""
    if pred is None or not str(pred).strip():
        return False
    pred = str(pred)
    gold_items = _as_list(gold)
    if gold_items is None:
        return _scalar_match(pred, gold)
    items = _as_list(pred)
    if items is None:
        items = [s for s in re.split(r"\s*(?:,|;|\band\b|\n)\s*", pred.strip().strip("[]")) if s.strip()]
    if len(items) != len(gold_items):
        return False
    free = list(items)
    for g in gold_items:
        hit = next((i for i, p in enumerate(free) if _scalar_match(p, g)), None)
        if hit is None:
            return False
        free.pop(hit)
    return True


def _header(table_csv: str) -> list[str]:
    try:
        return [h.strip() for h in next(csv.reader(io.StringIO(table_csv)), []) if h.strip()]
    except csv.Error:
        return []


_PLOT_CALL = re.compile(r"\.(?:plot|bar|barh|scatter|pie|hist|line|area|boxplot|stackplot|step|fill_between)\s*\(")


def code_intent(code: str | None, task: Text2VisTask) -> float:
    """0.5 when the code reads the table, uses a column the gold code uses, and draws; else 0 (judge scale)."""
    if not code:
        return 0.0
    cols = _header(task.table_csv)
    gold_cols = [c for c in cols if f"'{c}'" in task.gold_code or f'"{c}"' in task.gold_code] or cols
    reads = "read_csv" in code and "table.csv" in code
    uses = any(f"'{c}'" in code or f'"{c}"' in code or f".{c}" in code for c in gold_cols)
    return 0.5 if reads and uses and _PLOT_CALL.search(code) else 0.0


def _match_fraction(xs: list[float], ys: list[float]) -> float:
    """Fraction of ``xs`` with a close value in ``ys`` (each ``ys`` value used once)."""
    if not xs:
        return 0.0
    free = sorted(ys)
    hits = 0
    for x in xs:
        j = next((k for k, y in enumerate(free) if abs(x - y) <= max(0.01 * abs(y), 1e-6)), None)
        if j is not None:
            hits += 1
            free.pop(j)
    return hits / len(xs)


def value_f1(plotted: list[float], gold: list[float]) -> float:
    """Harmonic mean of precision (plotted values found in the gold) and recall (gold values plotted)."""
    if not plotted or not gold:
        return 0.0
    p, r = _match_fraction(plotted, gold), _match_fraction(gold, plotted)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _fractions(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values] if total and math.isfinite(total) else values


def _table_values(table_csv: str) -> list[float]:
    vals = []
    for row in list(csv.reader(io.StringIO(table_csv)))[1:]:
        for cell in row:
            try:
                vals.append(float(cell))
            except ValueError:
                continue
    return vals


class ProgrammaticChartJudge:
    """Readability and correctness (1-5) from the extracted structure against the gold chart.

    readability = 1 + title + both axis labels (pie: exempt) + a readable number of marks (1-60 bars or
    wedges; any number of line/scatter points) + legend for several series, else tick labels; capped
    at 2 for more than 8 subplots.  correctness = 1 + [value F1 >= 0.3] + [value F1 >= 0.8] + [type fits
    the kind or the gold's type] + [title / labels / ticks / legend name a column of the table].
    """

    def __init__(
        self, *, timeout_s: float = 20.0, memory_mb: int = 1024, executor: Callable[..., ChartRun] = execute_chart
    ) -> None:
        self.timeout_s, self.memory_mb, self._execute = timeout_s, memory_mb, executor
        self._gold: dict[str, dict | None] = {}
        self._lock = threading.Lock()
        self.stats = JudgeStats()

    def gold_structure(self, task: Text2VisTask) -> dict | None:
        """The gold chart's structure (executed once per task id; None when the gold code fails)."""
        with self._lock:
            if task.id in self._gold:
                return self._gold[task.id]
        run = self._execute(task.gold_code, task.table_csv, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        s = run.structure if run.ok else None
        self.stats.add("gold_runs")
        if s is None:
            self.stats.add("gold_failed")
        with self._lock:
            self._gold[task.id] = s
        return s

    def score(self, task: Text2VisTask, run: ChartRun) -> VisualScores:
        self.stats.add("calls")
        s = run.structure
        if not run.ok or not isinstance(s, dict) or "error" in s:
            return VisualScores(0.0, 0.0)
        if not s.get("n_marks"):
            return VisualScores(1.0, 1.0)
        return VisualScores(float(self._readability(s)), float(self._correctness(task, s)))

    @staticmethod
    def _readability(s: dict[str, Any]) -> int:
        kind = s.get("chart_type")
        r = 1 + bool(s.get("title")) + (kind == "pie" or bool(s.get("xlabel") and s.get("ylabel")))
        r += kind in ("line", "scatter") or 1 <= s.get("n_marks", 0) <= 60
        multi = kind == "line" and s.get("n_marks", 0) > 1
        r += bool(s.get("legend")) if multi else bool(s.get("xticklabels") or s.get("legend") or kind == "pie")
        return min(r, 2) if s.get("n_axes", 1) > 8 else r

    def _correctness(self, task: Text2VisTask, s: dict[str, Any]) -> int:
        gold = self.gold_structure(task)
        gold_values = gold["values"] if gold and gold.get("values") else _table_values(task.table_csv)
        plotted = list(s.get("values") or [])
        if (
            gold
            and "pie" in (s.get("chart_type"), gold.get("chart_type"))
            and s.get("chart_type") != gold.get("chart_type")
        ):
            plotted, gold_values = _fractions(plotted), _fractions(gold_values)
        f1 = value_f1(plotted, gold_values)
        fits = s.get("chart_type") in KIND_TYPES.get(task.kind, set()) or (
            gold is not None and s.get("chart_type") == gold.get("chart_type")
        )
        words = " ".join(
            [
                s.get("title", ""),
                s.get("xlabel", ""),
                s.get("ylabel", ""),
                *s.get("legend", []),
                *s.get("xticklabels", []),
                *s.get("yticklabels", []),
            ]
        ).casefold()
        names = any(c.casefold() in words for c in _header(task.table_csv) if len(c) > 1)
        return 1 + (f1 >= 0.3) + (f1 >= 0.8) + bool(fits) + names
