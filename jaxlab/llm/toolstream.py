"""Stream a forced tool call while the model writes it, as vLLM streams tool calls.

With ``tool_choice`` forcing a call, the grammar makes the model's whole output one JSON object
``{"name": ..., "arguments": {...}}`` (``jaxlab.llm.grammar.forced_tool_format``). The text so far
is scanned (string and escape aware, tracking nesting depth) for the name and the span of the
``arguments`` value, and turned into ``delta.tool_calls`` entries: one with the call's index, id,
type and name as soon as the name string is complete (``arguments: ""``), then each new piece of
the ``arguments`` value's raw text as it arrives, so the fragments concatenate to exactly what the
model wrote for that value. Rescanning the prefix each time is quadratic in the output length,
which is a few hundred characters for a call.
"""
from __future__ import annotations

import json
import uuid


def scan_call(text: str) -> tuple[str | None, int | None, int | None]:
    """``(name, start, end)`` in a (possibly unfinished) ``{"name": ..., "arguments": ...}`` object: the name once
    its string is complete, where the arguments value starts and, once it is complete, where it ends."""
    depth, in_str, esc = 0, False, False
    key, expect, str_start, str_is_value = None, False, None, False
    name, start, end = None, None, None
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                if str_start is not None:
                    value = json.loads(text[str_start:i + 1])
                    if not str_is_value:
                        key = value
                    elif key == "name":
                        name = value
                    if str_is_value and start == str_start and end is None:
                        end = i + 1
                    str_start = None
            continue
        if depth == 1 and expect and not ch.isspace():
            expect = False
            if key == "arguments" and start is None:
                start = i
            if ch == '"':
                in_str, str_start, str_is_value = True, i, True
                continue
        if ch == '"':
            in_str = True
            if depth == 1:
                str_start, str_is_value = i, False
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if start is not None and end is None and depth <= 1:
                end = i + 1 if depth == 1 else i  # a container value closed / a bare scalar ended by '}'
        elif depth == 1 and ch == ":":
            expect = True
        elif depth == 1 and ch == ",":
            if start is not None and end is None:
                end = i  # a bare scalar value ended by ','
            key = None
    return name, start, end


class ForcedCallStreamer:
    """Feed text deltas, get ``delta.tool_calls`` entries back (a list per feed, possibly empty)."""

    def __init__(self, index: int = 0, call_id: str | None = None) -> None:
        self.index = index
        self.id = call_id or f"call_{uuid.uuid4().hex[:12]}"
        self.text = ""
        self.sent = 0
        self.announced = False

    def feed(self, delta: str) -> list[dict]:
        self.text += delta
        name, start, end = scan_call(self.text)
        if name is None:
            return []
        out = []
        if not self.announced:
            self.announced = True
            out.append({"index": self.index, "id": self.id, "type": "function",
                        "function": {"name": name, "arguments": ""}})
        if start is not None:
            new = self.text[start + self.sent:end if end is not None else len(self.text)]
            if new:
                self.sent += len(new)
                out.append({"index": self.index, "function": {"arguments": new}})
        return out
