"""The one protocol every model call goes through.

Agents, judges and rewards only see :class:`ChatRequest` -> :class:`ChatResponse`,
so a run can swap an OpenAI-compatible endpoint, a local jaxlab model or a
scripted test double without touching experiment code.  The wire shapes follow
OpenAI chat completions (messages, ``tools``, ``tool_calls`` with JSON-string
arguments) because that is what every outside agent tool speaks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ROLES = ("system", "user", "assistant", "tool")
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "error")


class LLMError(RuntimeError):
    """A model call failed for a reason the caller should see (never swallowed)."""


class LLMRequestError(LLMError, ValueError):
    """The request itself is malformed; the message names the bad field."""


@dataclass(frozen=True)
class ToolCall:
    """One function call requested by the model; ``arguments`` is the raw JSON string."""

    name: str
    arguments: str = "{}"
    id: str = ""

    def parsed_arguments(self) -> dict:
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise LLMError(f"tool call {self.name!r}: arguments are not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise LLMError(f"tool call {self.name!r}: arguments must be a JSON object, got {value!r}")
        return value

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Usage:
    """Token counts; ``cached_tokens`` / ``reasoning_tokens`` are filled when the server reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def to_openai(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Choice:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ChatResponse:
    choices: tuple[Choice, ...]
    usage: Usage = Usage()
    model: str = ""
    cached: bool = False

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    def to_openai(self, response_id: str = "chatcmpl-jaxlab", created: int = 0) -> dict:
        choices = []
        for i, c in enumerate(self.choices):
            msg: dict[str, Any] = {"role": "assistant", "content": c.text}
            if c.tool_calls:
                msg["tool_calls"] = [t.to_openai() for t in c.tool_calls]
            choices.append({"index": i, "message": msg, "finish_reason": c.finish_reason})
        return {
            "id": response_id,
            "object": "chat.completion",
            "created": created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage.to_openai(),
        }

    @classmethod
    def from_openai(cls, body: dict) -> "ChatResponse":
        """Parse an OpenAI chat-completions body; a missing field is an :class:`LLMError`."""
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
            raise LLMError(f"response has no 'choices' list: {str(body)[:300]}")
        choices = []
        for i, c in enumerate(body["choices"]):
            msg = c.get("message") if isinstance(c, dict) else None
            if not isinstance(msg, dict):
                raise LLMError(f"response choices[{i}] has no 'message' object")
            calls = tuple(
                ToolCall(
                    name=t["function"]["name"], arguments=t["function"].get("arguments") or "{}", id=t.get("id", "")
                )
                for t in (msg.get("tool_calls") or [])
            )
            choices.append(
                Choice(text=msg.get("content") or "", tool_calls=calls, finish_reason=c.get("finish_reason") or "stop")
            )
        return cls(tuple(choices), usage_from_openai(body.get("usage")), model=body.get("model", ""))


def usage_from_openai(u: Any) -> Usage:
    """``usage`` of a chat body (dict or SDK object), with cached / reasoning token details when present."""
    if u is None:
        return Usage()
    if not isinstance(u, dict):
        u = u.model_dump() if hasattr(u, "model_dump") else dict(vars(u))
    p_details = u.get("prompt_tokens_details") or {}
    c_details = u.get("completion_tokens_details") or {}
    return Usage(
        int(u.get("prompt_tokens") or 0),
        int(u.get("completion_tokens") or 0),
        int(p_details.get("cached_tokens") or 0),
        int(c_details.get("reasoning_tokens") or 0),
    )


def _check_messages(messages: Any) -> tuple[dict, ...]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise LLMRequestError(f"messages: expected a non-empty list of {{role, content}} dicts, got {messages!r}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise LLMRequestError(f"messages[{i}]: expected a dict with 'role', got {m!r}")
        if m["role"] not in ROLES:
            raise LLMRequestError(f"messages[{i}].role: expected one of {list(ROLES)}, got {m['role']!r}")
        if m.get("content") is not None and not isinstance(m["content"], (str, list)):
            raise LLMRequestError(
                f"messages[{i}].content: expected a string or a list of content parts, "
                f"got {type(m['content']).__name__}"
            )
        out.append(dict(m))
    return tuple(out)


# fields added after caches existed: left out of ``key()`` while unset, so old cache entries still hit
_NEW_FIELDS = ("tool_choice", "reasoning_effort")


@dataclass(frozen=True)
class ChatRequest:
    """Everything that determines a completion; its :meth:`key` addresses the disk cache.

    ``temperature`` and ``max_tokens`` default to ``None`` = "not set": the HTTP
    client then omits them (reasoning models reject both), local backends use
    greedy decoding and 512 tokens.  ``extra`` is merged into the wire body.
    """

    messages: tuple[dict, ...]
    tools: tuple[dict, ...] = ()
    response_format: dict | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    model: str = ""
    extra: dict = field(default_factory=dict)
    tool_choice: Any = None
    reasoning_effort: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _check_messages(self.messages))
        object.__setattr__(self, "tools", tuple(self.tools or ()))
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        for i, t in enumerate(self.tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise LLMRequestError(
                    f"tools[{i}]: expected {{'type': 'function', 'function': {{'name', 'parameters'}}}}, got {t!r}"
                )
        if not isinstance(self.n, int) or self.n < 1:
            raise LLMRequestError(f"n: expected an integer >= 1, got {self.n!r}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise LLMRequestError(f"max_tokens: expected an integer >= 1, got {self.max_tokens!r}")
        if self.temperature is not None and not 0.0 <= float(self.temperature) <= 2.0:
            raise LLMRequestError(f"temperature: expected a number in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and not 0.0 < float(self.top_p) <= 1.0:
            raise LLMRequestError(f"top_p: expected a number in (0, 1], got {self.top_p!r}")
        rf = self.response_format
        if rf is not None and (
            not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")
        ):
            raise LLMRequestError(
                f"response_format: expected {{'type': 'text'|'json_object'|'json_schema', ...}}, got {rf!r}"
            )
        tc = self.tool_choice
        if (
            tc is not None
            and tc not in ("none", "auto", "required")
            and not (isinstance(tc, dict) and isinstance(tc.get("function"), dict))
        ):
            raise LLMRequestError(
                f"tool_choice: expected 'none'|'auto'|'required' or "
                f"{{'type': 'function', 'function': {{'name'}}}}, got {tc!r}"
            )

    def to_openai(self) -> dict:
        """The full wire body (the HTTP client's parameter policy then drops what a model rejects)."""
        body: dict[str, Any] = {"model": self.model, "messages": list(self.messages), "n": self.n}
        for name in (
            "temperature",
            "max_tokens",
            "top_p",
            "seed",
            "response_format",
            "tool_choice",
            "reasoning_effort",
        ):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.tools:
            body["tools"] = list(self.tools)
        if self.stop:
            body["stop"] = list(self.stop)
        body.update(self.extra)
        return body

    def key(self) -> str:
        """Stable hash of the full request: equal requests share a cache entry."""
        fields = dataclasses.asdict(self)
        for name in _NEW_FIELDS:
            if fields[name] is None:
                del fields[name]
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def user(text: str, system: str | None = None) -> tuple[dict, ...]:
    """Shorthand for the common one-turn conversation."""
    msgs = ({"role": "system", "content": system},) if system else ()
    return msgs + ({"role": "user", "content": text},)


@runtime_checkable
class ChatClient(Protocol):
    """Anything with ``complete``; :class:`jaxlab.llm.base.BaseClient` adds the conveniences."""

    def complete(self, request: ChatRequest) -> ChatResponse: ...
