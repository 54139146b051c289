"""OpenAI chat messages -> one prompt string through the model's own chat template.

Real clients send shapes that small-model templates were never written for:
``content: null`` on an assistant turn that only calls tools, ``content`` as a
list of ``{"type": "text"}`` parts, ``role: tool`` results, ``role: developer``.
:func:`normalise_messages` turns all of them into plain strings first; then
:func:`render_prompt` tries the template with structured tool calls and, if the
template rejects them (many raise on unknown roles), renders the tool turns as
text (Hermes ``<tool_call>`` / ``<tool_response>`` blocks) instead of failing.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

from jaxlab.llm.types import LLMRequestError

log = logging.getLogger(__name__)

_TOOL_NOTE = (
    "You can call these tools. To call one, reply with only\n"
    '<tool_call>{"name": <tool name>, "arguments": <JSON object>}</tool_call>\n'
    "Tools:\n"
)


def content_text(content: Any, where: str) -> str:
    """``None`` -> "", a string as is, a list of text parts joined; anything else is a 400."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                parts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise LLMRequestError(f"{where}.content[{j}]: only text parts are supported, got {kind!r}")
        return "".join(parts)
    raise LLMRequestError(
        f"{where}.content: expected a string, a list of text parts or null, got {type(content).__name__}"
    )


def _arguments(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {"_raw": str(raw)}
    return value if isinstance(value, dict) else {"_value": value}


def normalise_messages(messages: Sequence[Any]) -> list[dict]:
    """Plain ``{role, content}`` dicts (plus ``tool_calls`` / ``tool_call_id`` where present)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise LLMRequestError("messages: expected a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise LLMRequestError(f"messages[{i}]: expected an object with a string 'role', got {m!r}"[:300])
        role = {"developer": "system", "function": "tool"}.get(m["role"], m["role"])
        if role not in ("system", "user", "assistant", "tool"):
            raise LLMRequestError(
                f"messages[{i}].role: expected system|developer|user|assistant|tool, got {m['role']!r}"
            )
        msg: dict[str, Any] = {"role": role, "content": content_text(m.get("content"), f"messages[{i}]")}
        calls = m.get("tool_calls")
        if role == "assistant" and calls:
            if not isinstance(calls, list):
                raise LLMRequestError(f"messages[{i}].tool_calls: expected a list")
            norm = []
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise LLMRequestError(
                        f"messages[{i}].tool_calls[{j}]: expected {{'function': {{'name', 'arguments'}}}}"
                    )
                norm.append(
                    {
                        "id": c.get("id") or f"call_{j}",
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": _arguments(fn.get("arguments"))},
                    }
                )
            msg["tool_calls"] = norm
        if role == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or "")
            if m.get("name"):
                msg["name"] = str(m["name"])
        out.append(msg)
    return out


def _as_text_turns(messages: list[dict]) -> list[dict]:
    """Tool turns as plain text, for templates that only know system/user/assistant with string content."""
    out: list[dict] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            blocks = "\n".join(
                "<tool_call>"
                + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
                + "</tool_call>"
                for c in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": (m["content"] + "\n" + blocks).strip()})
        elif m["role"] == "tool":
            text = f"<tool_response>{m['content']}</tool_response>"
            if out and out[-1]["role"] == "user":  # strict-alternation templates: merge consecutive results
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + text}
            else:
                out.append({"role": "user", "content": text})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def render_prompt(
    tokenizer: Any, messages: Sequence[Any], tools: Sequence[dict] = (), json_note: str | None = None
) -> str:
    """The generation prompt for ``messages`` (already OpenAI-shaped) with the tokenizer's template."""
    msgs = normalise_messages(messages)
    fns = [t["function"] if isinstance(t, dict) and "function" in t else t for t in tools]
    # a tokenizer without a readable template (test doubles) is trusted to handle tools itself
    template = getattr(tokenizer, "chat_template", None)
    template = template if isinstance(template, str) else "tools tool_calls"
    notes = []
    if fns and "tools" not in template:  # the template would silently drop the tools: describe them ourselves
        notes.append(_TOOL_NOTE + "\n".join(json.dumps(f) for f in fns))
    if json_note:
        notes.append(json_note)
    if notes:
        if msgs[0]["role"] == "system":
            msgs[0] = {**msgs[0], "content": msgs[0]["content"] + "\n\n" + "\n\n".join(notes)}
        else:
            msgs.insert(0, {"role": "system", "content": "\n\n".join(notes)})
    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
    if fns and "tools" in template:
        kwargs["tools"] = fns
    has_tool_turns = any(m["role"] == "tool" or m.get("tool_calls") for m in msgs)
    if has_tool_turns and "tool_calls" not in template:
        msgs = _as_text_turns(msgs)  # the template ignores tool_calls / tool roles: keep them visible
    try:
        return tokenizer.apply_chat_template(msgs, **kwargs)
    except Exception as exc:  # jinja2 TemplateError, KeyError, ... : the template refused the structure
        if not has_tool_turns and not kwargs.get("tools"):
            raise LLMRequestError(f"messages: the model's chat template rejected them: {exc}") from exc
        log.warning("chat template rejected structured tool turns (%s); rendering them as text", exc)
    try:
        kwargs.pop("tools", None)
        return tokenizer.apply_chat_template(_as_text_turns(msgs), **kwargs)
    except Exception as exc:
        raise LLMRequestError(f"messages: the model's chat template rejected them: {exc}") from exc
