"""Recover OpenAI-style tool calls from a local model's raw text.

Small open models emit calls either as Hermes/Qwen-style
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks or as a bare
JSON object with ``name``/``arguments``; both become :class:`ToolCall` and the
call text is removed from the visible content.
"""

from __future__ import annotations

import json
import re

from jaxlab.llm.types import ToolCall

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def _as_call(obj: object, index: int, allowed: set[str] | None) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if allowed is not None and obj["name"] not in allowed:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name=obj["name"], arguments=json.dumps(args), id=f"call_{index}")


def _json_objects(text: str) -> list[tuple[int, int, object]]:
    """Every top-level JSON value that starts at a ``{``, with its span."""
    decoder = json.JSONDecoder()
    found, i = [], text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        found.append((i, end, obj))
        i = text.find("{", end)
    return found


def parse_tool_calls(text: str, tool_names: set[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split ``text`` into (visible content, tool calls).

    ``tool_names`` (when given) restricts bare-JSON detection to declared tools,
    so a model that merely answers in JSON is not mistaken for a call.
    """
    calls: list[ToolCall] = []
    if "<tool_call>" in text:
        for m in _BLOCK.finditer(text):
            try:
                obj = json.loads(m.group(1))
            except json.JSONDecodeError:
                continue
            for item in obj if isinstance(obj, list) else [obj]:
                call = _as_call(item, len(calls), tool_names)
                if call is not None:
                    calls.append(call)
        if calls:
            return _BLOCK.sub("", text).strip(), calls
    spans = []
    for start, end, obj in _json_objects(text):
        call = _as_call(obj, len(calls), tool_names)
        if call is not None:
            calls.append(call)
            spans.append((start, end))
    visible = text
    for start, end in reversed(spans):
        visible = visible[:start] + visible[end:]
    return visible.strip(), calls
