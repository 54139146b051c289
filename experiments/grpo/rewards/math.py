"""Math final-answer rewards: extraction (``\\boxed{}``, ``####``, last number) and equivalence by math-verify.

math-verify (the library TRL and open-r1 use) parses LaTeX and plain expressions and decides
equivalence symbolically and numerically; nothing here hand-rolls that.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# the timeout is replaced by bounded inputs (answers_equal); do not warn on every call
logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
logging.getLogger("math_verify.grader").setLevel(logging.ERROR)

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The final answer as a string: the last ``\\boxed{...}``, else after ``####``, else the last number."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0].strip() if tail else None
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


MAX_ANSWER_CHARS = 200


def answers_equal(predicted: str, gold: str) -> bool:
    """math-verify equivalence of two answer strings (LaTeX or plain expressions).

    math-verify's own timeout uses ``signal.alarm``, which only works on the main thread; rewards
    run in a thread pool, so the timeout is off and the inputs are bounded instead: only the
    extracted final answer (at most MAX_ANSWER_CHARS characters) is ever parsed.
    """
    if len(predicted) > MAX_ANSWER_CHARS:
        return False
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold_parsed = parse(f"${gold}$", extraction_config=configs, parsing_timeout=None)
    pred_parsed = parse(f"${predicted}$", extraction_config=configs, parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return predicted.strip() == gold.strip()
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def math_accuracy(
    prompts: Sequence[str], completions: Sequence[str], answer: Sequence[str] | None = None, **_: object
) -> list[float | None]:
    """1.0 when the completion's final answer equals the example's ``answer`` field, else 0.0."""
    if answer is None:
        raise ValueError("math_accuracy: the examples have no 'answer' field")
    out: list[float | None] = []
    for completion, gold in zip(completions, answer):
        pred = extract_answer(completion)
        out.append(None if gold is None else float(pred is not None and answers_equal(pred, str(gold))))
    return out


def boxed_format(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float | None]:
    """1.0 when the completion states exactly one final answer in ``\\boxed{}``."""
    return [float(c.count("\\boxed{") == 1 and _last_boxed(c) is not None) for c in completions]
