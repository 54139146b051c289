"""On-disk response cache keyed by the full request, so an interrupted run resumes.

One JSON file per request under ``root/<key[:2]>/<key>.json``, written
atomically (temp file + rename): a crash mid-write never leaves a corrupt
entry, and concurrent workers writing the same key are harmless.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from jaxlab.llm.base import BaseClient
from jaxlab.llm.types import ChatClient, ChatRequest, ChatResponse, Choice, ToolCall, Usage


def _encode(resp: ChatResponse) -> dict:
    return {
        "model": resp.model,
        "usage": [resp.usage.prompt_tokens, resp.usage.completion_tokens],
        "choices": [
            {
                "text": c.text,
                "finish_reason": c.finish_reason,
                "tool_calls": [[t.name, t.arguments, t.id] for t in c.tool_calls],
            }
            for c in resp.choices
        ],
    }


def _decode(data: dict) -> ChatResponse:
    choices = tuple(
        Choice(
            text=c["text"],
            finish_reason=c["finish_reason"],
            tool_calls=tuple(ToolCall(name=n, arguments=a, id=i) for n, a, i in c["tool_calls"]),
        )
        for c in data["choices"]
    )
    return ChatResponse(choices=choices, usage=Usage(*data["usage"]), model=data["model"], cached=True)


class CachedClient(BaseClient):
    """Wraps any client; hits return the stored response with ``cached=True``.

    Sampled requests (temperature > 0) are cached too: the key includes ``seed``
    and every sampling param, so callers that want k distinct samples must send
    k distinct seeds (the MAS search does).  ``hits``/``misses`` count lookups.
    """

    def __init__(self, inner: ChatClient, root: str | os.PathLike, max_concurrency: int = 8) -> None:
        super().__init__(max_concurrency)
        self.inner = inner
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.model = getattr(inner, "model", "")
        self.hits = 0
        self.misses = 0

    def path(self, request: ChatRequest) -> Path:
        key = request.key()
        return self.root / key[:2] / f"{key}.json"

    def _complete(self, request: ChatRequest) -> ChatResponse:
        path = self.path(request)
        if path.is_file():
            try:
                resp = _decode(json.loads(path.read_text()))
                with self._lock:
                    self.hits += 1
                return resp
            except (ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # unreadable entry: recompute, never trust it
        resp = self.inner.complete(request)
        with self._lock:
            self.misses += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(_encode(resp), f)
        os.replace(tmp, path)
        return resp
