"""A deterministic client for tests: replies come from a script or a function of the request."""

from __future__ import annotations

import json
import threading
from typing import Callable, Iterable, Union

from jaxlab.llm.base import BaseClient
from jaxlab.llm.types import ChatRequest, ChatResponse, Choice, LLMError, ToolCall, Usage

Reply = Union[str, Choice, ChatResponse, Exception]
Responder = Callable[[ChatRequest], Reply]


def _words(content: str | list | None) -> int:
    """Words of a message: its text, or the text parts of an OpenAI content-part list (images count 0)."""
    if isinstance(content, list):
        return sum(len(str(p.get("text") or "").split()) for p in content if isinstance(p, dict))
    return len((content or "").split())


def _as_response(reply: Reply, request: ChatRequest, model: str) -> ChatResponse:
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, ChatResponse):
        return reply
    choice = reply if isinstance(reply, Choice) else Choice(text=str(reply))
    prompt_words = sum(_words(m.get("content")) for m in request.messages)
    usage = Usage(prompt_tokens=prompt_words, completion_tokens=len(choice.text.split()) * request.n)
    return ChatResponse(choices=(choice,) * request.n, usage=usage, model=model)


def tool_reply(name: str, arguments: dict, text: str = "") -> Choice:
    """A choice that calls one function, as an OpenAI endpoint would return it."""
    return Choice(
        text=text,
        tool_calls=(ToolCall(name=name, arguments=json.dumps(arguments), id=f"call_{name}"),),
        finish_reason="tool_calls",
    )


class ScriptedClient(BaseClient):
    """Replays ``script`` in order, or answers with ``responder(request)``.

    Every request is kept in :attr:`requests` so tests can assert on what an
    agent actually sent.  Running past the end of a script is an error rather
    than a silent repeat, so a test notices an unexpected extra call.
    Token usage is counted in words, which is enough for cost accounting tests.
    """

    def __init__(
        self,
        script: Iterable[Reply] | None = None,
        responder: Responder | None = None,
        model: str = "scripted",
        max_concurrency: int = 8,
    ) -> None:
        super().__init__(max_concurrency)
        if (script is None) == (responder is None):
            raise ValueError("ScriptedClient: pass exactly one of script= or responder=")
        self._script = list(script) if script is not None else None
        self._responder = responder
        self._pos = 0
        self._req_lock = threading.Lock()
        self.model = model
        self.requests: list[ChatRequest] = []

    def _complete(self, request: ChatRequest) -> ChatResponse:
        with self._req_lock:
            self.requests.append(request)
            if self._script is not None:
                if self._pos >= len(self._script):
                    raise LLMError(f"ScriptedClient: script exhausted after {len(self._script)} replies")
                reply = self._script[self._pos]
                self._pos += 1
        if self._script is None:
            reply = self._responder(request)
        return _as_response(reply, request, self.model)


def echo_client() -> ScriptedClient:
    """Replies with the last user message; handy for wiring checks of ``jaxlab serve``."""

    def echo(request: ChatRequest) -> str:
        users = [m.get("content") or "" for m in request.messages if m["role"] == "user"]
        return users[-1] if users else ""

    return ScriptedClient(responder=echo, model="echo")
