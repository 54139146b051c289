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

Two extractors are selectable by name (``parser`` in the eval and RL configs, :data:`PARSERS`):

* ``json`` (the default): the reply's ``{"answer": ..., "code": ...}`` object read by a JSON
  decoder: the whole reply, else the inside of a code fence, else the first object that decodes
  where a ``{`` starts. Escapes are decoded properly (no cut at an escaped quote, no mojibake), raw
  newlines inside strings are tolerated, and a non-string answer (a list, a number) is kept as its
  JSON text, the form the gold list answers take. A reply with no such object falls back to the
  released regexes, so the authors' triple-quoted formats still extract.
* ``released``: the regexes above, exactly. It scores a correct top-k answer such as
  ``"[\"a\", \"b\"]"`` as ``[\\`` (the cut at the first quote), so a gold reply fails the answer.

The strict format reward is the same under both.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

__all__ = [
    "CODE_FORMATS",
    "JSON_FORMAT",
    "PARSERS",
    "Parsed",
    "extract_answer_code",
    "extract_json",
    "format_ok",
    "parse_output",
]

_ANSWER = re.compile(r'"answer"\s*:\s*"([^"]+)"')
_CODE = (
    ("triple_double", re.compile(r'"code"\s*:\s*"""\s*(.*?)\s*"""', re.DOTALL)),
    ("triple_single", re.compile(r"\"code\"\s*:\s*'''\s*(.*?)\s*'''", re.DOTALL)),
    ("json_string", re.compile(r'"code"\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)),
)
CODE_FORMATS = tuple(name for name, _ in _CODE)
"""The authors' three code formats, in the order the extractor tries them."""
JSON_FORMAT = "json_object"
"""``code_format`` of a reply the ``json`` parser read as a JSON object."""
PARSERS = ("json", "released")
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_STARTS = 64  # object starts tried by the scan; a reply is a few thousand characters


@dataclass(frozen=True)
class Parsed:
    """One reply, read both ways.

    ``answer`` / ``code``: what the chosen extractor finds (None when absent);
    ``code_format``: which of :data:`CODE_FORMATS` (or :data:`JSON_FORMAT`) matched; ``format_ok``: the strict
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


def _as_answer(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None  # empty is absent, as the released regex has it
    return json.dumps(value, ensure_ascii=False)


def _json_object(text: str) -> dict | None:
    """The first reply object with an ``answer`` or ``code`` key: whole text, fenced block, then a scan."""
    decoder = json.JSONDecoder(strict=False)  # strict=False: raw newlines / tabs inside strings
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for cand in candidates:
        try:
            obj = decoder.decode(cand)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict) and ("answer" in obj or "code" in obj):
            return obj
    start = text.find("{")
    for _ in range(_MAX_STARTS):
        if start < 0:
            break
        try:
            obj, _end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict) and ("answer" in obj or "code" in obj):
            return obj
        start = text.find("{", start + 1)
    return None


def extract_json(text: str) -> tuple[str | None, str | None, str | None]:
    """``(answer, code, code_format)`` from the reply's JSON object, else by the released regexes."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected the model's reply as str, got {type(text).__name__}")
    obj = _json_object(text)
    if obj is None:
        return extract_answer_code(text)
    code = obj.get("code")
    return (
        _as_answer(obj.get("answer")),
        code if isinstance(code, str) else None,
        JSON_FORMAT if isinstance(code, str) else None,
    )


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


def parse_output(text: str, parser: str = "json") -> Parsed:
    """Both readings of one reply: ``parser`` (:data:`PARSERS`) extracts, the format check is strict.

    Never raises on model text; a non-str argument is a TypeError, an unknown parser a ValueError.
    """
    if parser not in PARSERS:
        raise ValueError(f"parser: expected one of {PARSERS}, got {parser!r}")
    answer, code, fmt = (extract_json if parser == "json" else extract_answer_code)(text)
    ok, why = format_ok(text)
    return Parsed(answer=answer, code=code, format_ok=ok, code_format=fmt, json_error=why)
