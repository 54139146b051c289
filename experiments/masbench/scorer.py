"""MASBench scoring: every ``\\boxed{}`` answer must match, in count and in order.

Answers are compared with light math equivalence (``1,000`` = ``1000`` =
``1000.0``, ``\\frac{1}{2}`` = ``0.5``, ``$7$`` = ``7``), never by substring, so
a model cannot pass by listing many candidates.
"""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Sequence

_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")
_FRAC = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")


def extract_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (nested braces allowed), in order of appearance."""
    out, i = [], 0
    while True:
        i = text.find("\\boxed", i)
        if i == -1:
            return out
        j = i + len("\\boxed")
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text) or text[j] != "{":
            i = j
            continue
        depth, k = 0, j
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                break
            k += 1
        if depth != 0:  # unbalanced: the answer was cut off
            return out
        out.append(text[j + 1:k].strip())
        i = k + 1


def normalize(answer: str) -> str:
    s = answer.strip().strip("$").strip()
    s = _TEXT.sub(r"\1", s)
    s = _FRAC.sub(r"(\1)/(\2)", s)
    for junk in ("\\!", "\\,", "\\;", "\\left", "\\right", "\\%", "%", "\\$", " "):
        s = s.replace(junk, "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s.rstrip(".").lower()


def _number(s: str) -> Fraction | None:
    m = re.fullmatch(r"\(?(-?\d+(?:\.\d+)?)\)?(?:/\(?(-?\d+(?:\.\d+)?)\)?)?", s)
    if not m:
        return None
    num = Fraction(m.group(1))
    if m.group(2) is not None:
        den = Fraction(m.group(2))
        return None if den == 0 else num / den
    return num


def equivalent(pred: str, gold: str) -> bool:
    a, b = normalize(pred), normalize(gold)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    return x is not None and y is not None and abs(x - y) <= Fraction(1, 10**6) * max(1, abs(y))


def score(prediction: str, gold: Sequence[str]) -> dict:
    """Score one response against the ordered gold answers.

    ``correct`` needs exactly ``len(gold)`` boxed answers, each equivalent to the
    gold at the same position; ``partial`` is the positional match rate (useful
    for Horizon/Robustness intermediate answers).
    """
    if not gold:
        raise ValueError("gold: expected at least one answer, got none")
    preds = extract_boxed(prediction)
    matched = [i < len(preds) and equivalent(preds[i], g) for i, g in enumerate(gold)]
    count_ok = len(preds) == len(gold)
    return {"correct": count_ok and all(matched), "count_ok": count_ok, "n_pred": len(preds),
            "n_gold": len(gold), "matched": matched, "partial": sum(matched) / len(gold), "predicted": preds}
