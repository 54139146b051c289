"""Which request parameters a model accepts, and under which names.

OpenAI-compatible endpoints disagree: reasoning models (o1/o3/o4, GPT-5) take
``max_completion_tokens`` and reject ``temperature``/``top_p``; most others take
``max_tokens``; some take ``reasoning_effort``; vLLM wants its own knobs in
``extra_body``.  A :class:`ModelPolicy` says this per model, from YAML
(``client.policy: {...}``) on top of a built-in guess from the model name, and
:meth:`ModelPolicy.build` turns a :class:`ChatRequest` into SDK keyword
arguments - raising *before* anything is sent when a request asks for a
parameter the model rejects (``on_unsupported: error``, the default), or
dropping it with one logged warning (``on_unsupported: drop``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from jaxlab.llm.types import ChatRequest, LLMRequestError

log = logging.getLogger(__name__)

SAMPLING = ("temperature", "top_p", "seed", "stop", "n")
_REASONING = re.compile(r"^(o\d|gpt-5)(?!.*-chat)", re.IGNORECASE)


@dataclass(frozen=True)
class ModelPolicy:
    """Per-model request rules; ``None`` fields fall back to the built-in guess for the model name."""

    token_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    sampling: tuple[str, ...] | None = None  # which of SAMPLING the model accepts
    reasoning_effort: str | None = None  # sent on every request when set (minimal|low|medium|high)
    accepts_reasoning_effort: bool | None = None
    tools: bool | None = None
    tool_choice: bool | None = None
    response_format: bool | None = None
    extra_body: dict = field(default_factory=dict)  # merged into every request body (vLLM knobs, etc.)
    on_unsupported: Literal["error", "drop"] = "error"


def builtin_policy(model: str) -> ModelPolicy:
    """What public model names are known to accept (reasoning models: no sampling parameters)."""
    if _REASONING.match(model.split("/")[-1]):
        return ModelPolicy(
            token_param="max_completion_tokens",
            sampling=("seed", "n"),
            accepts_reasoning_effort=True,
            tools=True,
            tool_choice=True,
            response_format=True,
        )
    return ModelPolicy(
        token_param="max_tokens",
        sampling=SAMPLING,
        accepts_reasoning_effort=False,
        tools=True,
        tool_choice=True,
        response_format=True,
    )


def resolve_policy(model: str, override: ModelPolicy | dict | None = None) -> ModelPolicy:
    """Built-in guess for ``model`` with every non-``None`` field of ``override`` on top."""
    base = builtin_policy(model)
    if override is None:
        return base
    if isinstance(override, dict):
        known = {f.name for f in dataclasses.fields(ModelPolicy)}
        bad = sorted(set(override) - known)
        if bad:
            raise LLMRequestError(f"client.policy.{bad[0]}: unknown key; expected one of {sorted(known)}")
        if "sampling" in override and override["sampling"] is not None:
            override = {**override, "sampling": tuple(override["sampling"])}
        override = ModelPolicy(**override)
    unknown = sorted(set(override.sampling or ()) - set(SAMPLING))
    if unknown:
        raise LLMRequestError(f"client.policy.sampling: {unknown[0]!r} is not one of {list(SAMPLING)}")
    changes = {
        f.name: getattr(override, f.name)
        for f in dataclasses.fields(ModelPolicy)
        if getattr(override, f.name) is not None and f.name not in ("extra_body", "on_unsupported")
    }
    return dataclasses.replace(
        base, **changes, extra_body=dict(override.extra_body), on_unsupported=override.on_unsupported
    )


def _allowed(policy: ModelPolicy, name: str) -> bool:
    if name in SAMPLING:
        return name in (policy.sampling or ())
    if name == "reasoning_effort":
        return bool(policy.accepts_reasoning_effort)
    return bool(getattr(policy, name))


def build_kwargs(policy: ModelPolicy, request: ChatRequest, model: str) -> dict[str, Any]:
    """SDK ``chat.completions.create`` kwargs for ``request``; unset params are never sent."""
    kwargs: dict[str, Any] = {"model": request.model or model, "messages": list(request.messages)}
    wanted: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
        "n": request.n if request.n != 1 else None,
        "tools": list(request.tools) or None,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        "reasoning_effort": request.reasoning_effort or policy.reasoning_effort,
    }
    rejected = []
    for name, value in wanted.items():
        if value is None:
            continue
        if _allowed(policy, name):
            kwargs[name] = value
        else:
            rejected.append(name)
    if rejected:
        msg = (
            f"model {kwargs['model']!r} does not accept {rejected} (client.policy: sampling="
            f"{list(policy.sampling or ())}, tools={policy.tools}, tool_choice={policy.tool_choice}, "
            f"response_format={policy.response_format}, reasoning_effort={policy.accepts_reasoning_effort}); "
            f"remove them from the config or set client.policy.on_unsupported=drop"
        )
        if policy.on_unsupported == "error":
            raise LLMRequestError(msg)
        log.warning("%s -- dropping them", msg)
    if request.max_tokens is not None:
        kwargs[policy.token_param or "max_tokens"] = request.max_tokens
    extra = {**policy.extra_body, **request.extra}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs
