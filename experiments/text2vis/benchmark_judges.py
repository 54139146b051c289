"""The Text2Vis benchmark's own LLM judges (``eval_predictions.py``), through the pluggable client.

They differ from the RL-Text2Vis reward judges (:mod:`experiments.text2vis.judges`):

* answer match: only the gold and the generated answer are shown, with five matching rules (close
  numbers or equivalent percentages, gold contained in the reply, same core meaning, minor spelling
  or abbreviation differences, no match when the meaning changes); the judge replies ``1`` or ``0``
  and anything else reads as 0, as ``int(text.strip())`` does there;
* chart scores: the query, the table and the PNG; two 0-5 scores in half steps, "Readability and
  Quality Score" (labels, layout, colours, axes, chart type, fonts, annotations) and "Chart
  Correctness Score" (query alignment, data integrity, insight, missing data, complexity), read from
  strict JSON (a ```json fence removed); the released code sends the prompt and the image as two
  user messages, and so does this.

Unlike the released script, every reply that does not parse is counted (``fallbacks``) and logged,
and a score off the 0-5 half-step grid is snapped to it and counted (``off_grid``), never silent.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from typing import Any

from experiments.text2vis.execute import ChartRun
from experiments.text2vis.judges import TextVerdict
from experiments.text2vis.programmatic import JudgeStats, VisualScores
from experiments.text2vis.tasks import Text2VisTask
from jaxlab.llm import ChatClient, ChatRequest, LLMError

__all__ = ["BenchmarkAnswerJudge", "BenchmarkChartJudge", "answer_prompt", "chart_prompt", "parse_chart_scores"]

_log = logging.getLogger(__name__)
READABILITY_KEY = "Readability and Quality Score"
CORRECTNESS_KEY = "Chart Correctness Score"


def answer_prompt(gold: str, generated: str | None) -> str:
    """Gold and generated answer with the benchmark's five matching rules; the reply is 1 or 0."""
    return (
        "You are an expert evaluator. Using the rules below, decide whether the generated answer matches the "
        "ground truth.\n\n"
        f'Ground Truth Answer: "{gold}"\nGenerated Answer: "{generated}"\n\n'
        "Rules:\n"
        '1. Match when numbers are close (e.g. "48.77" and "48.73") or are equivalent percentages '
        '(e.g. "100%" and "100").\n'
        '2. Match when the ground truth appears inside the generated response (e.g. "100" in "The result is 100").\n'
        "3. Match when the core meaning is the same, even if a long answer is phrased differently.\n"
        '4. Allow minor spelling differences and abbreviations (e.g. "USA" and "United States").\n'
        '5. Do NOT match when the meaning changes significantly (e.g. "Fragile" and "Extreme fragility").\n\n'
        "Reply with only 1 if they match, else 0. No explanation."
    )


def chart_prompt(task: Text2VisTask) -> str:
    """Query, table and the two 0-5 rubrics with the half-step scoring guide; strict JSON reply."""
    return (
        "You are a visualization expert. Score the chart for the query and data table below.\n\n"
        f'Query: "{task.question}"\nData Table: {task.table_csv}\n\n'
        "1. Readability and Quality Score (0-5): labels and titles clear and well placed; organised, uncluttered "
        "layout; distinct, accessible colours; labelled, proportional axes; a chart type that suits the data; "
        "readable fonts and legends; clear, non-overlapping annotations.\n"
        "2. Chart Correctness Score (0-5): the chart answers the query; values are shown accurately; the insight "
        "is conveyed clearly; no misleading gaps from missing data; multi-step queries handled logically.\n\n"
        "Scoring guide: 5.0 excellent, 4.5 very good (minor issues), 4.0 good (small flaws), 3.5 decent (some "
        "clarity or accuracy issues), 3.0 average (noticeable issues), 2.5 below average (may mislead), 2.0 poor, "
        "1.5 very poor, 1.0 unusable, 0.0 failed (irrelevant or broken).\n\n"
        f'Return strict JSON only: {{"{READABILITY_KEY}": "...", "{CORRECTNESS_KEY}": "..."}}'
    )


def _snap(value: float) -> float:
    return min(5.0, max(0.0, round(value * 2) / 2))


def parse_chart_scores(text: str) -> tuple[VisualScores, bool, bool]:
    """``(scores, parsed, off_grid)``; an unreadable reply gives 0 and 0 (as released) with ``parsed`` False."""
    t = text.strip()
    if t.startswith("```json"):
        t = t[7:]
        t = t[:-3] if t.endswith("```") else t
    try:
        obj = json.loads(t.strip())
        raw = [float(obj.get(READABILITY_KEY, 0)), float(obj.get(CORRECTNESS_KEY, 0))]
    except (ValueError, TypeError, AttributeError):
        return VisualScores(0.0, 0.0), False, False
    if not all(math.isfinite(v) for v in raw):
        return VisualScores(0.0, 0.0), False, False
    snapped = [_snap(v) for v in raw]
    return VisualScores(*snapped), True, snapped != raw


def _reply(client: ChatClient, req: ChatRequest, stats: JudgeStats, who: str) -> str | None:
    """The reply text, or None after counting and logging a failed call (the caller scores it 0)."""
    stats.add("calls")
    try:
        return client.complete(req).text
    except LLMError as exc:
        for key in ("call_errors", "fallbacks"):
            stats.add(key)
        _log.warning("benchmark %s judge: call failed, scored 0: %s", who, exc)
        return None


class BenchmarkAnswerJudge:
    """Answer match (1/0) from a text model; ``code_intent_score`` is 0 (the benchmark has no code judge)."""

    def __init__(self, client: ChatClient, *, model: str | None = None, max_tokens: int = 16) -> None:
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.stats = JudgeStats()

    def judge(self, task: Text2VisTask, answer: str | None, code: str | None) -> TextVerdict:
        req = ChatRequest(
            messages=({"role": "user", "content": answer_prompt(task.answer, answer)},),
            max_tokens=self.max_tokens,
            temperature=0.0,
            model=self.model or getattr(self.client, "model", ""),
        )
        text = _reply(self.client, req, self.stats, "answer")
        if text is None:
            return TextVerdict(0, 0.0, parsed=False)
        text = text.strip()
        if text not in ("0", "1"):
            self.stats.add("fallbacks")
            _log.warning("benchmark answer judge: reply is not 0 or 1, read as 0: %.200r", text)
            return TextVerdict(0, 0.0, parsed=False)
        return TextVerdict(int(text), 0.0)


class BenchmarkChartJudge:
    """Readability and correctness (0-5, half steps) from a vision model shown the rendered PNG."""

    def __init__(self, client: ChatClient, *, model: str | None = None, max_tokens: int = 256) -> None:
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.stats = JudgeStats()

    def score(self, task: Text2VisTask, run: ChartRun) -> VisualScores:
        if not run.ok or not run.png:
            return VisualScores(0.0, 0.0)  # released: no image, both 0
        url = "data:image/png;base64," + base64.b64encode(run.png).decode("ascii")
        messages: tuple[dict[str, Any], ...] = (
            {"role": "user", "content": chart_prompt(task)},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
        )
        req = ChatRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=0.0,
            model=self.model or getattr(self.client, "model", ""),
        )
        text = _reply(self.client, req, self.stats, "chart")
        if text is None:
            return VisualScores(0.0, 0.0)
        scores, parsed, off_grid = parse_chart_scores(text)
        if not parsed:
            self.stats.add("fallbacks")
            _log.warning("benchmark chart judge: reply did not parse, scoring 0/0: %.200r", text)
        if off_grid:
            self.stats.add("off_grid")
            _log.warning("benchmark chart judge: score off the 0-5 half-step grid, snapped: %.200r", text)
        return scores
