"""Shared conveniences on top of the one-method protocol (sync, async, batch, usage)."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Sequence

from jaxlab.llm.concurrency import gather_bounded, map_bounded
from jaxlab.llm.types import ChatRequest, ChatResponse, Usage


class BaseClient:
    """Subclasses implement :meth:`_complete`; everything else is shared.

    ``max_concurrency`` bounds both :meth:`batch` threads and :meth:`acomplete`
    calls in flight (one semaphore per client, so several callers share it).
    Token usage is summed across threads in :attr:`usage`.
    """

    model: str = ""

    def __init__(self, max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected an integer >= 1, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self._usage = Usage()
        self._calls = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def _complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError(f"{type(self).__name__} must implement _complete(request)")

    def complete(self, request: ChatRequest) -> ChatResponse:
        with self._slots:
            response = self._complete(request)
        if not response.cached:
            with self._lock:
                self._usage = self._usage + response.usage
                self._calls += 1
        return response

    def chat(self, messages: Sequence[dict], **params: Any) -> ChatResponse:
        """``complete`` with keyword sampling params (``tools=``, ``temperature=``, ``n=`` ...)."""
        params.setdefault("model", self.model)
        return self.complete(ChatRequest(messages=tuple(messages), **params))

    async def acomplete(self, request: ChatRequest) -> ChatResponse:
        return await asyncio.to_thread(self.complete, request)

    async def achat(self, messages: Sequence[dict], **params: Any) -> ChatResponse:
        params.setdefault("model", self.model)
        return await self.acomplete(ChatRequest(messages=tuple(messages), **params))

    def batch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return map_bounded(self.complete, requests, self.max_concurrency)

    async def abatch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return await gather_bounded([self.acomplete(r) for r in requests], self.max_concurrency)

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage

    @property
    def num_calls(self) -> int:
        with self._lock:
            return self._calls
