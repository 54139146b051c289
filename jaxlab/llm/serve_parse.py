"""OpenAI request bodies -> :class:`GenSpec`, with the 400s a real server gives.

Parsing is lenient where OpenAI clients expect it (fields jaxlab does not
implement are accepted, logged and ignored, as vLLM does) and strict where a
silent default would mislead (``max_tokens: 0`` is a 400, not 512).
"""

from __future__ import annotations

import logging
from typing import Any

from jaxlab.llm.backends import GenSpec

log = logging.getLogger("jaxlab.serve")

CHAT_FIELDS = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
}
COMPLETION_FIELDS = {
    "model",
    "prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "logprobs",
}
# accepted so standard clients work, but they change nothing here (logged once per request)
IGNORED_FIELDS = {
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "parallel_tool_calls",
    "service_tier",
    "store",
    "metadata",
    "modalities",
    "prediction",
    "audio",
    "reasoning_effort",
    "echo",
    "best_of",
    "suffix",
    "functions",
    "function_call",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
}


class RequestError(ValueError):
    """A 4xx answer: ``status``, OpenAI error ``type``, the offending ``param`` and optional ``code``."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.type, self.code = status, param, type_, code


def _num(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise RequestError(f"{key}: expected a number in [{lo}, {hi}], got {value!r}", key)
    return float(value)


def _int(body: dict, key: str, default: int | None, lo: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise RequestError(f"{key}: expected an integer >= {lo}, got {value!r}", key)
    return value


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise RequestError(f"stop: expected a non-empty string or a list of up to 4, got {stop!r}", "stop")
    return tuple(stop)


def _warn_unused(body: dict, known: set[str], route: str) -> list[str]:
    unused = sorted(k for k in body if k not in known)
    if unused:
        unknown = [k for k in unused if k not in IGNORED_FIELDS]
        log.warning(
            "%s: ignoring request fields %s%s", route, unused, f" (not OpenAI fields: {unknown})" if unknown else ""
        )
    return unused


def stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise RequestError(f"stream: expected a boolean, got {stream!r}", "stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise RequestError(f"stream_options: expected an object, got {opts!r}", "stream_options")
    return stream, bool(opts.get("include_usage")) and stream


def _common(body: dict, default_max_tokens: int) -> dict[str, Any]:
    max_tokens = _int(body, "max_completion_tokens", None, 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", default_max_tokens, 1)
    return dict(
        max_tokens=max_tokens,
        temperature=_num(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_num(body, "top_p", 1.0, 1e-9, 1.0),
        n=_int(body, "n", 1, 1),
        stop=_stop(body),
        seed=_int(body, "seed", None, -(2**63)),
    )


def parse_chat(body: Any, default_max_tokens: int) -> GenSpec:
    if not isinstance(body, dict):
        raise RequestError("request body: expected a JSON object")
    _warn_unused(body, CHAT_FIELDS, "/v1/chat/completions")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: expected a non-empty list", "messages")
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
        for t in tools
    ):
        raise RequestError(
            "tools: expected a list of {'type': 'function', 'function': {'name', 'parameters'}}", "tools"
        )
    tool_choice = body.get("tool_choice")
    if (
        tool_choice is not None
        and tool_choice not in ("none", "auto", "required")
        and not (isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict))
    ):
        raise RequestError(
            f"tool_choice: expected 'none'|'auto'|'required' or {{'type': 'function', "
            f"'function': {{'name'}}}}, got {tool_choice!r}",
            "tool_choice",
        )
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")):
        raise RequestError(
            f"response_format: expected {{'type': 'text'|'json_object'|'json_schema'}}, got {rf!r}", "response_format"
        )
    if (
        rf is not None
        and rf["type"] == "json_schema"
        and not (isinstance(rf.get("json_schema"), dict) and isinstance(rf["json_schema"].get("schema"), (dict, bool)))
    ):
        raise RequestError("response_format.json_schema: expected {'name': ..., 'schema': {...}}", "response_format")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError(f"logprobs: expected a boolean, got {logprobs!r}", "logprobs")
    top = _int(body, "top_logprobs", None, 0)
    if top is not None and top > 20:
        raise RequestError(f"top_logprobs: expected an integer in [0, 20], got {top}", "top_logprobs")
    if top is not None and not logprobs:
        raise RequestError("top_logprobs: needs logprobs: true", "top_logprobs")
    return GenSpec(
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        response_format=rf,
        logprobs=(top or 0) if logprobs else None,
        **_common(body, default_max_tokens),
    )


def parse_completion(body: Any, default_max_tokens: int) -> GenSpec:
    if not isinstance(body, dict):
        raise RequestError("request body: expected a JSON object")
    _warn_unused(body, COMPLETION_FIELDS, "/v1/completions")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise RequestError("prompt: expected a non-empty string (one prompt per request)", "prompt")
    logprobs = _int(body, "logprobs", None, 0)
    if logprobs is not None and logprobs > 5:
        raise RequestError(
            f"logprobs: expected an integer in [0, 5] (alternatives per token), got {logprobs}", "logprobs"
        )
    return GenSpec(prompt=prompt, logprobs=logprobs, **_common(body, default_max_tokens))
