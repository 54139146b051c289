"""Read a model's Text2Vis reply: the short answer, the chart code, and whether the format reward holds.

This reproduces the two readers of the released RL-Text2Vis trainer (``scripts/rl_text2vis.py``),
which disagree on purpose and must stay apart:

* the **extractor** (what gets executed and judged) is lenient and regex-based: the answer is the
  first ``"answer": "..."`` with no quote inside; the code is taken, in this order, from the
  authors' three code formats

  1. ``"code":`` followed by a Python block in three double quotes (inside a JSON-looking reply),
  2. ``"code":`` followed by a block in three single quotes,
  3. ``"code": "..."``, a proper JSON string with escapes,

  and then passed through Python's ``unicode_escape`` codec (so a backslash-n becomes a newline; on a
  decoding error the raw text is kept).  Surrounding prose, a ```json fence or trailing text do not
  stop it.
* the **format reward** is strict: the whole reply must be ``json.loads``-able into an object whose
  ``answer`` and ``code`` are strings, and the stripped code must end with ``plt.show()``.

Quirks kept because the reward depends on them: an answer is cut at its first double quote (an
escaped quote leaves the backslash) and an empty answer extracts as None; ``unicode_escape`` turns non-ASCII UTF-8 into mojibake
(the decode reads the UTF-8 bytes as Latin-1); a reply can be well-formatted yet extract different
code than ``json.loads`` would (the extractor wins for execution, as in the released code).
"""
from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

__all__ = ["CODE_FORMATS", "Parsed", "extract_answer_code", "format_ok", "parse_output"]

_ANSWER = re.compile(r'"answer"\s*:\s*"([^"]+)"')
_CODE = (
    ("triple_double", re.compile(r'"code"\s*:\s*"""\s*(.*?)\s*"""', re.DOTALL)),
    ("triple_single", re.compile(r"\"code\"\s*:\s*'''\s*(.*?)\s*'''", re.DOTALL)),
    ("json_string", re.compile(r'"code"\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)),
)
CODE_FORMATS = tuple(name for name, _ in _CODE)
"""The authors' three code formats, in the order the extractor tries them."""


@dataclass(frozen=True)
class Parsed:
    """One reply, read both ways.

    ``answer`` / ``code``: what the released extractor finds (None when absent);
    ``code_format``: which of :data:`CODE_FORMATS` matched; ``format_ok``: the strict
    format reward condition; ``json_error``: why strict parsing failed (for logs).
    """

    answer: str | None
    code: str | None
    format_ok: bool
    code_format: str | None = None
    json_error: str | None = None


def _unescape(raw: str) -> str:
    """``\\n``, ``\\t``, ``\\"`` ... to characters the way the released code does (raw text on failure)."""
    try:
        return codecs.decode(raw.encode("utf-8"), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return raw


def extract_answer_code(text: str) -> tuple[str | None, str | None, str | None]:
    """``(answer, code, code_format)`` by the released trainer's regexes (lenient; see the module doc)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected the model's reply as str, got {type(text).__name__}")
    m = _ANSWER.search(text)
    answer = m.group(1) if m else None
    for name, pattern in _CODE:
        c = pattern.search(text)
        if c:
            return answer, _unescape(c.group(1)), name
    return answer, None, None


def format_ok(text: str) -> tuple[bool, str | None]:
    """The released format reward's condition, and the reason when it fails."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        return False, f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return False, f"JSON is a {type(obj).__name__}, not an object"
    for key in ("answer", "code"):
        if not isinstance(obj.get(key), str):
            return False, f"{key!r} missing or not a string"
    if not obj["code"].strip().endswith("plt.show()"):
        return False, "code does not end with plt.show()"
    return True, None


def parse_output(text: str) -> Parsed:
    """Both readings of one reply (never raises on model text; a non-str argument is a TypeError)."""
    answer, code, fmt = extract_answer_code(text)
    ok, why = format_ok(text)
    return Parsed(answer=answer, code=code, format_ok=ok, code_format=fmt, json_error=why)
