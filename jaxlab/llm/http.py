"""OpenAI-compatible HTTP backend on the official ``openai`` SDK (sync ``OpenAI`` + native ``AsyncOpenAI``).

Works with OpenAI, vLLM, SGLang, LiteLLM proxies and ``jaxlab serve``.  The SDK
does the HTTP, connection pooling, timeouts, typed errors and response parsing.
Retries are jaxlab's own loop over the SDK's typed errors (the SDK's internal
retries are switched off) because the SDK has no *total* deadline: here every
retry honours ``Retry-After`` in all three forms (``retry-after-ms``, seconds,
HTTP date), each wait is capped at ``max_backoff_s``, and the whole call -
attempts and waits - never exceeds ``deadline_s``.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from typing import Any, AsyncIterator, Iterator

import openai
from openai.lib.streaming.chat import ChatCompletionStreamState

from jaxlab.llm.base import BaseClient
from jaxlab.llm.policy import ModelPolicy, build_kwargs, resolve_policy
from jaxlab.llm.types import Choice, ChatRequest, ChatResponse, LLMError, LLMRequestError, Usage

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class HTTPStatusError(LLMError):
    """The server answered with an error status; ``status`` and ``body`` say why."""

    def __init__(self, status: int, body: str, url: str) -> None:
        self.status, self.body, self.url = status, body, url
        hint = {401: " (check the API key env var)", 404: " (check base_url and model name)"}.get(status, "")
        super().__init__(f"HTTP {status} from {url}{hint}: {str(body)[:500]}")


def retry_after_s(headers: Any) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, ``retry-after`` seconds or HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _status_error(exc: openai.APIStatusError, url: str) -> HTTPStatusError:
    body = exc.body  # the SDK already unwraps {"error": {...}}
    message = body.get("message") if isinstance(body, dict) else None
    return HTTPStatusError(exc.status_code, str(message or body or exc.message), url)


class _StreamAccumulator:
    """Assembles a streamed chat completion with the SDK's own ``ChatCompletionStreamState``: choice 0's text,
    its tool calls put together from their ``delta.tool_calls`` fragments by index (the first fragment of a
    call brings its id and name, later ones append to ``arguments``, as OpenAI and vLLM stream them), the
    finish reason and the final usage chunk."""

    def __init__(self) -> None:
        self.state = ChatCompletionStreamState()
        self.chunks = 0
        self.final: ChatResponse | None = None

    def feed(self, chunk: Any) -> str | None:
        self.state.handle_chunk(chunk)
        self.chunks += 1
        return next((c.delta.content for c in chunk.choices if c.index == 0 and c.delta.content), None)

    def broken(self, url: str, exc: Exception) -> LLMError:
        return LLMError(f"stream from {url} broke after {self.chunks} chunks: {exc}")

    def response(self, model: str) -> ChatResponse:
        if not self.chunks:
            return ChatResponse((Choice(""),), Usage(), model=model)
        body = self.state.current_completion_snapshot.model_dump()  # get_final_completion raises on "length"
        return ChatResponse.from_openai({**body, "model": body.get("model") or model})


class ChatStream:
    """A streamed completion: iterate (``for`` / ``async for``) for the text deltas; afterwards
    :attr:`response` is the whole :class:`ChatResponse`, tool calls assembled, usage booked."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks
        self.acc = _StreamAccumulator()
        self.response: ChatResponse | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._chunks(self.acc)
        self.response = self.acc.final

    async def __aiter__(self) -> AsyncIterator[str]:
        async for text in self._chunks(self.acc):
            yield text
        self.response = self.acc.final


class OpenAIHTTPClient(BaseClient):
    """``ChatClient`` over an OpenAI-compatible endpoint.

    ``base_url`` and the key default to ``$JAXLAB_LLM_BASE_URL`` / ``$OPENAI_BASE_URL``
    and ``$<api_key_env>``.  ``policy`` (a :class:`ModelPolicy` or its YAML dict) says
    which params the model accepts; a request that sets a rejected one fails before
    it is sent.  ``timeout_s`` bounds one attempt, ``deadline_s`` the whole call.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        deadline_s: float = 600.0,
        max_concurrency: int = 8,
        policy: ModelPolicy | dict | None = None,
    ) -> None:
        super().__init__(max_concurrency)
        base_url = base_url or os.environ.get("JAXLAB_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise LLMError(
                "OpenAIHTTPClient: no base_url given and neither $JAXLAB_LLM_BASE_URL nor "
                "$OPENAI_BASE_URL is set (expected e.g. http://127.0.0.1:8000/v1)"
            )
        for name, value in (("timeout_s", timeout_s), ("deadline_s", deadline_s), ("max_backoff_s", max_backoff_s)):
            if not value > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries: expected >= 0, got {max_retries!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.model = model
        self.timeout_s, self.max_retries, self.deadline_s = timeout_s, max_retries, deadline_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.policy = resolve_policy(model, policy)
        self.retries = 0  # attempts that were retried, across calls (for reports)
        common = dict(base_url=self.base_url, api_key=self.api_key or "none", max_retries=0, timeout=timeout_s)
        self._sdk = openai.OpenAI(**common)
        self._async_kwargs = common
        self._async: dict[int, tuple[openai.AsyncOpenAI, asyncio.Semaphore]] = {}

    # ----------------------------------------------------------------- retry policy
    def _delay(self, exc: Exception, attempt: int, started: float) -> float:
        """Seconds to wait before the next attempt, or raise the error this call ends with."""
        url = f"{self.base_url}/chat/completions"
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code not in RETRY_STATUS:
                raise _status_error(exc, url) from None
            last: LLMError = _status_error(exc, url)
            asked = retry_after_s(exc.response.headers if exc.response is not None else None)
        elif isinstance(exc, openai.APITimeoutError):
            last, asked = LLMError(f"{url}: no answer within {self.timeout_s:g} s"), None
        elif isinstance(exc, openai.APIConnectionError):
            last, asked = LLMError(f"cannot reach {url}: {exc.__cause__ or exc}"), None
        elif isinstance(exc, (openai.APIResponseValidationError, ValueError)):  # truncated / non-JSON body
            last, asked = LLMError(f"{url} returned a body that is not a chat completion: {exc}"), None
        else:
            raise exc
        if attempt >= self.max_retries:
            raise LLMError(f"giving up after {attempt + 1} attempts: {last}") from exc
        backoff = self.backoff_s * (2**attempt) * (0.5 + random.random() / 2)
        delay = min(self.max_backoff_s, asked if asked is not None else backoff)
        left = self.deadline_s - (time.monotonic() - started)
        if delay >= left:
            raise LLMError(
                f"giving up: the next retry (in {delay:.1f} s) would pass the {self.deadline_s:g} s "
                f"deadline after {attempt + 1} attempts: {last}"
            ) from exc
        self.retries += 1
        return delay

    def _timeout(self, started: float) -> float:
        left = self.deadline_s - (time.monotonic() - started)
        if left <= 0:
            raise LLMError(f"giving up: the {self.deadline_s:g} s deadline passed")
        return min(self.timeout_s, left)

    @staticmethod
    def _parse(completion: Any) -> ChatResponse:
        body = completion.model_dump() if hasattr(completion, "model_dump") else completion
        if not isinstance(body, dict) or not body.get("choices"):
            raise ValueError(f"no choices in the response: {str(body)[:200]}")
        return ChatResponse.from_openai(body)

    # ----------------------------------------------------------------- sync
    def _complete(self, request: ChatRequest) -> ChatResponse:
        kwargs = build_kwargs(self.policy, request, self.model)  # LLMRequestError before anything is sent
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return self._parse(self._sdk.chat.completions.create(**kwargs, timeout=self._timeout(started)))
            except LLMRequestError:
                raise
            except Exception as exc:  # noqa: BLE001 - _delay re-raises what is not retryable
                time.sleep(self._delay(exc, attempt, started))
                attempt += 1

    # ----------------------------------------------------------------- async (native, bounded, cancellable)
    def _async_client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()  # one pool + semaphore per event loop
        key = id(loop)
        if key not in self._async:
            self._async[key] = (openai.AsyncOpenAI(**self._async_kwargs), asyncio.Semaphore(self.max_concurrency))
        return self._async[key]

    async def acomplete(self, request: ChatRequest) -> ChatResponse:
        kwargs = build_kwargs(self.policy, request, self.model)
        client, slots = self._async_client()
        started = time.monotonic()
        attempt = 0
        async with slots:
            while True:
                try:
                    completion = await client.chat.completions.create(**kwargs, timeout=self._timeout(started))
                    response = self._parse(completion)
                    break
                except (LLMRequestError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001
                    await asyncio.sleep(self._delay(exc, attempt, started))
                    attempt += 1
        self._record(response)
        return response

    # ----------------------------------------------------------------- streaming (text of choice 0)
    def _stream_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        if request.n != 1:
            raise LLMRequestError(f"n: streaming returns one choice, got n={request.n}")
        return {
            **build_kwargs(self.policy, request, self.model),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """Text deltas as the server sends them; usage is booked when the stream ends (:meth:`stream_chat`
        also gives the assembled response, tool calls included)."""
        yield from self.stream_chat(request)

    def stream_chat(self, request: ChatRequest) -> ChatStream:
        """A :class:`ChatStream` of text deltas whose ``response`` (after the loop) holds the tool calls.

        Opening the stream is retried like :meth:`complete` (Retry-After, caps, deadline); once text has
        arrived a broken stream raises :class:`LLMError` instead (a retry would repeat the text).
        """
        kwargs = self._stream_kwargs(request)

        def chunks(acc: _StreamAccumulator) -> Iterator[str]:
            started, attempt = time.monotonic(), 0
            with self._slots:
                while True:
                    try:
                        sdk_stream = self._sdk.chat.completions.create(**kwargs, timeout=self._timeout(started))
                        break
                    except LLMRequestError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - _delay re-raises what is not retryable
                        time.sleep(self._delay(exc, attempt, started))
                        attempt += 1
                try:
                    for chunk in sdk_stream:
                        text = acc.feed(chunk)
                        if text:
                            yield text
                except openai.APIError as exc:
                    raise acc.broken(self.base_url, exc) from exc
                finally:
                    sdk_stream.close()
            acc.final = acc.response(self.model)
            self._record(acc.final)

        return ChatStream(chunks)

    async def astream(self, request: ChatRequest) -> AsyncIterator[str]:
        """:meth:`stream` on ``AsyncOpenAI``, sharing :meth:`acomplete`'s concurrency bound."""
        async for text in self.astream_chat(request):
            yield text

    def astream_chat(self, request: ChatRequest) -> ChatStream:
        """:meth:`stream_chat` on ``AsyncOpenAI``: ``async for`` the deltas, then read ``response``."""
        kwargs = self._stream_kwargs(request)

        async def chunks(acc: _StreamAccumulator) -> AsyncIterator[str]:
            client, slots = self._async_client()
            started, attempt = time.monotonic(), 0
            async with slots:
                while True:
                    try:
                        sdk_stream = await client.chat.completions.create(**kwargs, timeout=self._timeout(started))
                        break
                    except (LLMRequestError, asyncio.CancelledError):
                        raise
                    except Exception as exc:  # noqa: BLE001
                        await asyncio.sleep(self._delay(exc, attempt, started))
                        attempt += 1
                try:
                    async for chunk in sdk_stream:
                        text = acc.feed(chunk)
                        if text:
                            yield text
                except openai.APIError as exc:
                    raise acc.broken(self.base_url, exc) from exc
                finally:
                    await sdk_stream.close()
            acc.final = acc.response(self.model)
            self._record(acc.final)

        return ChatStream(chunks)

    def close(self) -> None:
        self._sdk.close()
