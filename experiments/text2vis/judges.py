"""The RL-Text2Vis judges through the pluggable LLM client, and their programmatic stand-ins.

* :class:`LLMTextJudge`: the released trainer's text judge prompt (question, gold and generated
  answer, gold and generated code) asking for ``{"answer_score": 0 or 1, "code_intent_score": 0 or
  0.5}``, read the released way: a reply starting with ``{`` or a ```json fence has its fences
  removed, then ``json.loads``; ``answer_score`` goes through ``int(str(v).strip())`` (so ``1.0``
  reads as 0, as there), ``code_intent_score`` through ``float``; any failure gives both 0.
* :class:`LLMVisualJudge`: the released VLM prompt (query, table, the two 1-5 rubrics) with the
  rendered PNG sent as an OpenAI ``image_url`` content part (a base64 data URL); the two scores are
  read with the released regexes (integer digits after ``"readability_score":`` and
  ``"visual_correctness_score":``, searched in ``str([reply])`` as there), each 0 when absent.
* :class:`ProgrammaticTextJudge` / :class:`~experiments.text2vis.programmatic.ProgrammaticChartJudge`:
  the same numbers without a model.

The released code turns every unreadable judge reply (and every failed call) into a silent 0.  The
scores here are the same, but each such fallback is counted in :class:`JudgeStats` (exposed per
judge, logged per GRPO step by the reward) and logged once per reply at WARNING.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from experiments.text2vis.execute import ChartRun
from experiments.text2vis.programmatic import (
    JudgeStats,
    ProgrammaticChartJudge,
    VisualScores,
    answer_match,
    code_intent,
    value_f1,
)
from experiments.text2vis.tasks import Text2VisTask
from jaxlab.llm import ChatClient, ChatRequest, LLMError

__all__ = [
    "JudgeStats",
    "LLMTextJudge",
    "LLMVisualJudge",
    "ProgrammaticChartJudge",
    "ProgrammaticTextJudge",
    "TextVerdict",
    "VisualScores",
    "answer_match",
    "code_intent",
    "text_judge_prompt",
    "value_f1",
    "visual_judge_prompt",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextVerdict:
    """The text judge's two numbers as the released reward reads them, and whether the reply parsed."""

    answer_score: float
    code_intent_score: float
    parsed: bool = True


class TextJudge(Protocol):
    stats: JudgeStats

    def judge(self, task: Text2VisTask, answer: str | None, code: str | None) -> TextVerdict: ...


class VisualJudge(Protocol):
    stats: JudgeStats

    def score(self, task: Text2VisTask, run: ChartRun) -> VisualScores: ...


def text_judge_prompt(task: Text2VisTask, answer: str | None, code: str | None) -> str:
    """The released text-judge prompt (``None`` renders as ``None``, as an f-string does there)."""
    return (
        "You are an expert evaluator for data science questions and visualizations.\n\n"
        "Given the following inputs:\n\n"
        f"Question:\n{task.question}\n\n"
        f"Ground Truth Answer:\n{task.answer}\n\n"
        f"Generated Answer:\n{answer}\n\n"
        f"Ground Truth Code:\n{task.gold_code}\n\n"
        f"Generated Code:\n{code}\n\n"
        "Evaluate two things:\n\n"
        "1. Answer Match \u2014 Return 1 if the generated answer is semantically the same as the ground truth.\n"
        "   Allow small differences (e.g., minor rounding, % vs. number, small typos). Else, return 0. "
        "For example, if the difference is less than 0.5, consider this as a match.\n"
        "2. Code Intent Match \u2014 Return 0.5 if the code aligns with the question\u2019s intent and is readable.\n"
        "   It should use the correct data and produce a relevant chart. Else, return 0.\n\n"
        "Return only this JSON:\n"
        "{\n"
        '  "answer_score": 0 or 1,\n'
        '  "code_intent_score": 0 or 0.5\n'
        "}"
    )


def visual_judge_prompt(task: Text2VisTask) -> str:
    """The released VLM prompt; the table goes in as the task's CSV text."""
    return (
        "You are a data visualization expert.\n\n"
        f'Query: "{task.question}"\n'
        f"Data Table: {task.table_csv}\n\n"
        "Rate the following two aspects of the generated visualization image:\n\n"
        "1. **Readability Score (1 to 5)**:\n"
        "   - 5 = Excellent (well-structured, clear fonts, proper labels, perfect layout)\n"
        "   - 4 = Good (minor spacing or color issues but still readable)\n"
        "   - 3 = Average (some clutter or overlapping, unclear axes/legends)\n"
        "   - 2 = Poor (difficult to interpret, missing labels or inconsistent layout)\n"
        "   - 1 = Very Poor (unreadable, messy or mislabeled chart)\n\n"
        "2. **Visual Correctness Score (1 to 5)**:\n"
        "   - 5 = Fully correct (matches the query perfectly, shows the right data)\n"
        "   - 4 = Mostly correct (minor mismatch or missing info but still useful)\n"
        "   - 3 = Partially correct (some correct elements, others wrong or misleading)\n"
        "   - 2 = Incorrect (does not match the query or data, misleading visuals)\n"
        "   - 1 = Completely incorrect (irrelevant, empty, or nonsensical chart)\n\n"
        "Return ONLY this JSON:\n"
        "{\n"
        '  "readability_score": <1\u20135>,\n'
        '  "visual_correctness_score": <1\u20135>\n'
        "}"
    )


def _safe_int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def parse_text_verdict(content: str) -> TextVerdict:
    """The released reading of a text-judge reply; ``parsed=False`` where it fell back to (0, 0)."""
    if content.startswith("{") or content.startswith("```json"):
        content = content.replace("```json", "").replace("```", "").strip()
    try:
        obj = json.loads(content)
        answer_score = _safe_int(obj.get("answer_score", 0))
        intent = float(obj.get("code_intent_score", 0))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return TextVerdict(0, 0.0, parsed=False)
    return TextVerdict(answer_score, intent)


_READ = re.compile(r'"readability_score":\s*(\d+)')
_CORRECT = re.compile(r'"visual_correctness_score":\s*(\d+)')


def parse_visual_scores(content: str) -> tuple[VisualScores, list[str]]:
    """The released reading of a VLM reply, and which of the two fields fell back to 0."""
    haystack = str([content])  # the released code searches the repr of the decoded batch (a list)
    missing, values = [], []
    for name, pattern in (("readability", _READ), ("correctness", _CORRECT)):
        found = pattern.findall(haystack)
        values.append(float(found[0]) if found else 0.0)
        if not found:
            missing.append(name)
    return VisualScores(*values), missing


class LLMTextJudge:
    """Answer match + code intent from a text model behind any :class:`jaxlab.llm.ChatClient`."""

    def __init__(
        self, client: ChatClient, *, model: str | None = None, max_tokens: int = 1024, temperature: float | None = 0.0
    ) -> None:
        self.client, self.model, self.max_tokens, self.temperature = client, model, max_tokens, temperature
        self.stats = JudgeStats()

    def judge(self, task: Text2VisTask, answer: str | None, code: str | None) -> TextVerdict:
        req = ChatRequest(
            messages=({"role": "user", "content": text_judge_prompt(task, answer, code)},),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            model=self.model or getattr(self.client, "model", ""),
        )
        self.stats.add("calls")
        try:
            content = self.client.complete(req).text
        except LLMError as exc:
            self.stats.add("call_errors")
            self.stats.add("fallbacks")
            _log.warning("text judge: call failed, scoring 0/0 as the released code does: %s", exc)
            return TextVerdict(0, 0.0, parsed=False)
        verdict = parse_text_verdict(content)
        if not verdict.parsed:
            self.stats.add("fallbacks")
            _log.warning("text judge: reply did not parse, scoring 0/0: %.200r", content)
        return verdict


class LLMVisualJudge:
    """Readability and correctness 1-5 from a vision model, the PNG sent as an image content part."""

    def __init__(
        self, client: ChatClient, *, model: str | None = None, max_tokens: int = 1024, temperature: float | None = 0.0
    ) -> None:
        self.client, self.model, self.max_tokens, self.temperature = client, model, max_tokens, temperature
        self.stats = JudgeStats()

    def score(self, task: Text2VisTask, run: ChartRun) -> VisualScores:
        if not run.ok or not run.png:
            return VisualScores(0.0, 0.0)  # released: no PNG, no VLM call, both 0
        url = "data:image/png;base64," + base64.b64encode(run.png).decode("ascii")
        content = [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": visual_judge_prompt(task)},
        ]
        req = ChatRequest(
            messages=({"role": "user", "content": content},),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            model=self.model or getattr(self.client, "model", ""),
        )
        self.stats.add("calls")
        try:
            reply = self.client.complete(req).text
        except LLMError as exc:
            self.stats.add("call_errors")
            self.stats.add("fallbacks")
            _log.warning("visual judge: call failed, scoring 0/0 as the released code does: %s", exc)
            return VisualScores(0.0, 0.0)
        scores, missing = parse_visual_scores(reply)
        if missing:
            self.stats.add("fallbacks")
            for name in missing:
                self.stats.add(f"fallback_{name}")
            _log.warning("visual judge: %s missing from the reply, scored 0: %.200r", missing, reply)
        return scores


class ProgrammaticTextJudge:
    """:func:`answer_match` as ``answer_score`` (0/1) and :func:`code_intent` (0/0.5): no model needed."""

    def __init__(self) -> None:
        self.stats = JudgeStats()

    def judge(self, task: Text2VisTask, answer: str | None, code: str | None) -> TextVerdict:
        self.stats.add("calls")
        return TextVerdict(int(answer_match(answer, task.answer)), code_intent(code, task))
