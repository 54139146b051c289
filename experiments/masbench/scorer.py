"""Answer checking for every math task: final-answer extraction and math-verify equivalence.

* :func:`final_answer` / :func:`math_correct` — single-answer tasks (AIME,
  MATH-500, GSM8K) graded as the MAS-ProVe authors' AIME evaluation does: the
  ``<answer>...</answer>`` tag first, else the *last* ``\\boxed{}`` (any number
  of boxes is fine), else "The answer is ...", else the last number; then
  equivalence by math-verify (``\\frac12`` = ``1/2``, ``x=5`` = ``5``).
* :func:`score` — MASBench multi-answer tasks: every ``\\boxed{}`` answer must
  match, in count and in order (the MAS-Orchestra protocol), never by
  substring, so a model cannot pass by listing many candidates.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Sequence

from experiments.grpo.rewards.math import answers_equal

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
        out.append(text[j + 1 : k].strip())
        i = k + 1


_FRAC_DIGITS = re.compile(r"\\d?frac(\d)(\d)")
_VAR_PREFIX = re.compile(r"^[a-z]=(?=.)")


def normalize(answer: str) -> str:
    """A canonical key: LaTeX wrappers and spacing removed; a plain number (``x=`` dropped) as a reduced fraction.

    Equivalent single answers written differently (``\\frac12``, ``0.5``, ``x=1/2``; ``073`` and ``73``)
    get the same key, so majority votes over them do not split; anything else falls to math-verify in
    :func:`equivalent`.
    """
    s = answer.strip().strip("$").strip()
    s = _TEXT.sub(r"\1", s)
    s = _FRAC.sub(r"(\1)/(\2)", s)
    s = _FRAC_DIGITS.sub(r"(\1)/(\2)", s)
    for junk in ("\\!", "\\,", "\\;", "\\left", "\\right", "\\%", "%", "\\$", " "):
        s = s.replace(junk, "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = s.rstrip(".").lower()
    x = _number(s)
    if x is None and _VAR_PREFIX.match(s):  # "x=5" -> 5; an equation such as "y=2x+3" stays whole
        x = _number(_VAR_PREFIX.sub("", s))
    return s if x is None else str(x)


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
    """Same answer: equal after light normalisation, equal as plain numbers, else math-verify equivalent."""
    a, b = normalize(pred), normalize(gold)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return abs(x - y) <= Fraction(1, 10**6) * max(1, abs(y))
    return answers_equal(pred.strip().strip("$"), gold.strip().strip("$"))


_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.IGNORECASE | re.DOTALL)
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is[:\s]*\$?([^$\n]+?)\$?\s*(?:\.\s*)?$", re.MULTILINE)
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str) -> str | None:
    """The one final answer of a response: ``<answer>`` tag, last ``\\boxed{}``, "The answer is", last number."""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    boxed = extract_boxed(text)
    if boxed:
        return boxed[-1]
    said = _ANSWER_IS.findall(text)
    if said:
        return said[-1].strip()
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def math_correct(text: str, gold: str) -> bool:
    """A single-answer task: the response's final answer is math-equivalent to ``gold``."""
    pred = final_answer(text)
    return pred is not None and equivalent(pred, str(gold))


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
    return {
        "correct": count_ok and all(matched),
        "count_ok": count_ok,
        "n_pred": len(preds),
        "n_gold": len(gold),
        "matched": matched,
        "partial": sum(matched) / len(gold),
        "predicted": preds,
    }
