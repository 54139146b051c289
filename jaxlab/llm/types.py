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
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens)

    def to_openai(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


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
        return {"id": response_id, "object": "chat.completion", "created": created,
                "model": self.model, "choices": choices, "usage": self.usage.to_openai()}

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
                ToolCall(name=t["function"]["name"], arguments=t["function"].get("arguments") or "{}",
                         id=t.get("id", ""))
                for t in (msg.get("tool_calls") or []))
            choices.append(Choice(text=msg.get("content") or "", tool_calls=calls,
                                  finish_reason=c.get("finish_reason") or "stop"))
        u = body.get("usage") or {}
        return cls(tuple(choices), Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))),
                   model=body.get("model", ""))


def _check_messages(messages: Any) -> tuple[dict, ...]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise LLMRequestError(f"messages: expected a non-empty list of {{role, content}} dicts, got {messages!r}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise LLMRequestError(f"messages[{i}]: expected a dict with 'role', got {m!r}")
        if m["role"] not in ROLES:
            raise LLMRequestError(f"messages[{i}].role: expected one of {list(ROLES)}, got {m['role']!r}")
        if m.get("content") is not None and not isinstance(m["content"], str):
            raise LLMRequestError(f"messages[{i}].content: expected a string, got {type(m['content']).__name__}")
        out.append(dict(m))
    return tuple(out)


@dataclass(frozen=True)
class ChatRequest:
    """Everything that determines a completion; its :meth:`key` addresses the disk cache."""

    messages: tuple[dict, ...]
    tools: tuple[dict, ...] = ()
    response_format: dict | None = None
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 512
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    model: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _check_messages(self.messages))
        object.__setattr__(self, "tools", tuple(self.tools or ()))
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        for i, t in enumerate(self.tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise LLMRequestError(
                    f"tools[{i}]: expected {{'type': 'function', 'function': {{'name', 'parameters'}}}}, got {t!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise LLMRequestError(f"n: expected an integer >= 1, got {self.n!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise LLMRequestError(f"max_tokens: expected an integer >= 1, got {self.max_tokens!r}")
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise LLMRequestError(f"temperature: expected a number in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and not 0.0 < float(self.top_p) <= 1.0:
            raise LLMRequestError(f"top_p: expected a number in (0, 1], got {self.top_p!r}")
        rf = self.response_format
        if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")):
            raise LLMRequestError(
                f"response_format: expected {{'type': 'text'|'json_object'|'json_schema', ...}}, got {rf!r}")

    def to_openai(self) -> dict:
        body: dict[str, Any] = {"model": self.model, "messages": list(self.messages),
                                "temperature": self.temperature, "max_tokens": self.max_tokens, "n": self.n}
        if self.tools:
            body["tools"] = list(self.tools)
        if self.response_format is not None:
            body["response_format"] = self.response_format
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.stop:
            body["stop"] = list(self.stop)
        if self.seed is not None:
            body["seed"] = self.seed
        body.update(self.extra)
        return body

    @classmethod
    def from_openai(cls, body: dict) -> "ChatRequest":
        """Build a request from a chat-completions JSON body (the server side)."""
        if not isinstance(body, dict):
            raise LLMRequestError(f"request body: expected a JSON object, got {type(body).__name__}")
        known = {"model", "messages", "tools", "response_format", "temperature", "top_p", "max_tokens",
                 "max_completion_tokens", "n", "stop", "seed", "tool_choice", "stream", "user"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise LLMRequestError(f"unsupported request field {unknown[0]!r}; supported: {sorted(known)}")
        if body.get("stream"):
            raise LLMRequestError("stream: streaming is not supported by this server; send stream=false")
        stop = body.get("stop") or ()
        return cls(messages=body.get("messages"), tools=tuple(body.get("tools") or ()),
                   response_format=body.get("response_format"),
                   temperature=float(body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0),
                   top_p=body.get("top_p"),
                   max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 512),
                   n=body.get("n") or 1, stop=(stop,) if isinstance(stop, str) else tuple(stop),
                   seed=body.get("seed"), model=body.get("model") or "")

    def key(self) -> str:
        """Stable hash of the full request: equal requests share a cache entry."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def user(text: str, system: str | None = None) -> tuple[dict, ...]:
    """Shorthand for the common one-turn conversation."""
    msgs = ({"role": "system", "content": system},) if system else ()
    return msgs + ({"role": "user", "content": text},)


@runtime_checkable
class ChatClient(Protocol):
    """Anything with ``complete``; :class:`jaxlab.llm.base.BaseClient` adds the conveniences."""

    def complete(self, request: ChatRequest) -> ChatResponse: ...
