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
        self._by_caller: dict[str, Usage] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def _complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError(f"{type(self).__name__} must implement _complete(request)")

    def _record(self, response: ChatResponse, caller: str | None = None) -> None:
        if response.cached:
            return
        with self._lock:
            self._usage = self._usage + response.usage
            self._calls += 1
            if caller is not None:
                self._by_caller[caller] = self._by_caller.get(caller, Usage()) + response.usage

    def complete(self, request: ChatRequest) -> ChatResponse:
        with self._slots:
            response = self._complete(request)
        self._record(response)
        return response

    def for_caller(self, tag: str) -> "CallerView":
        """A view of this client whose calls are also counted under ``usage_by_caller[tag]``
        (e.g. ``"mas"``, ``"verifier"``, ``"judge"`` sharing one endpoint)."""
        return CallerView(self, tag)

    @property
    def usage_by_caller(self) -> dict[str, Usage]:
        with self._lock:
            return dict(self._by_caller)

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


class CallerView:
    """Forwards to a :class:`BaseClient` and books usage under one caller tag (shares its slots and cache)."""

    def __init__(self, inner: BaseClient, tag: str) -> None:
        self.inner, self.tag = inner, tag
        self.model = inner.model

    def complete(self, request: ChatRequest) -> ChatResponse:
        response = self.inner.complete(request)
        self._book(response)
        return response

    async def acomplete(self, request: ChatRequest) -> ChatResponse:
        response = await self.inner.acomplete(request)
        self._book(response)
        return response

    def _book(self, response: ChatResponse) -> None:
        if response.cached:
            return
        with self.inner._lock:
            by = self.inner._by_caller
            by[self.tag] = by.get(self.tag, Usage()) + response.usage

    def chat(self, messages: Sequence[dict], **params: Any) -> ChatResponse:
        params.setdefault("model", self.model)
        return self.complete(ChatRequest(messages=tuple(messages), **params))

    @property
    def usage(self) -> Usage:
        return self.inner.usage_by_caller.get(self.tag, Usage())
