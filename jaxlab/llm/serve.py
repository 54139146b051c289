"""``jaxlab serve MODEL``: an OpenAI-compatible server on FastAPI + uvicorn (the stack vLLM and SGLang use).

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(both streamed as SSE or not), ``GET /health``.  Every error is an OpenAI-shaped
``{"error": {"message", "type", "param", "code"}}`` with its real status, so
the official client raises the matching typed exception and the keep-alive
connection stays usable.  Bodies are read with a size cap and a timeout (a
client that sends less than its Content-Length gets a 408, not a stuck task).
Generation runs in :mod:`jaxlab.llm.backends`; this file is HTTP only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jaxlab.llm.backends import Generation, GenSpec, check_spec
from jaxlab.llm.serve_parse import RequestError, parse_chat, parse_completion, stream_flags
from jaxlab.llm.types import LLMRequestError

log = logging.getLogger("jaxlab.serve")


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _error(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None, close: bool = False
) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    return JSONResponse(error_body(message, type_, param, code), status_code=status, headers=headers)


async def _read_json(request: Request, max_body_bytes: int, read_timeout_s: float) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise RequestError(
            f"request body of {declared} bytes exceeds the limit of {max_body_bytes}", status=413, code="body_too_large"
        )

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(
                    f"request body exceeds the limit of {max_body_bytes} bytes", status=413, code="body_too_large"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        raw = await asyncio.wait_for(read(), read_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(
            f"request body not received within {read_timeout_s:g} s", status=408, code="read_timeout"
        ) from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None


def _tool_call_delta(calls: tuple) -> list[dict]:
    return [
        {
            "index": k,
            "id": c.id or f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for k, c in enumerate(calls)
    ]


ARGUMENT_FRAGMENT = 8
"""Characters of a tool call's ``arguments`` per streamed delta."""


def _tool_call_stream(calls: tuple) -> list[list[dict]]:
    """``delta.tool_calls`` lists as vLLM streams them: per call one delta with its index, id, type and name
    (``arguments: ""``), then deltas that carry only the index and the next fragment of ``arguments``.
    The calls are parsed from the held-back text once the choice ends, so the fragments follow each other
    then, not token by token."""
    deltas = []
    for head in _tool_call_delta(calls):
        args = head["function"]["arguments"]
        deltas.append([{**head, "function": {"name": head["function"]["name"], "arguments": ""}}])
        deltas += [
            [{"index": head["index"], "function": {"arguments": args[j : j + ARGUMENT_FRAGMENT]}}]
            for j in range(0, len(args), ARGUMENT_FRAGMENT)
        ]
    return deltas


def _legacy_logprobs(entries: list[dict], offset: int) -> dict:
    """``/v1/completions`` logprobs shape: parallel lists, alternatives as ``{token: logprob}``."""
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{a["token"]: a["logprob"] for a in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


class _Route:
    """Turns backend events into one chat/completion body or an SSE stream."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _logprobs(self, entries: list[dict] | None, offset: int = 0) -> dict | None:
        if entries is None:
            return None
        return {"content": entries, "refusal": None} if self.chat else _legacy_logprobs(entries, offset)

    async def body(self, gen: Generation, n: int) -> dict:
        texts, reasons, calls, done_tokens = [""] * n, ["stop"] * n, [()] * n, 0
        lps: list[list[dict] | None] = [None] * n
        async for ev in gen.events:
            if ev[0] == "delta":
                texts[ev[1]] += ev[2]
                extra = ev[3]
            else:
                _, i, reasons[i], calls[i], toks, extra = ev
                done_tokens += toks
            if extra is not None:
                lps[ev[1]] = (lps[ev[1]] or []) + extra
        choices = []
        for i in range(n):
            if self.chat:
                msg: dict[str, Any] = {"role": "assistant", "content": texts[i] if texts[i] or not calls[i] else None}
                if calls[i]:
                    msg["tool_calls"] = _tool_call_delta(calls[i])
                    for m in msg["tool_calls"]:
                        m.pop("index")
                choices.append(
                    {"index": i, "message": msg, "logprobs": self._logprobs(lps[i]), "finish_reason": reasons[i]}
                )
            else:
                choices.append(
                    {"index": i, "text": texts[i], "logprobs": self._logprobs(lps[i]), "finish_reason": reasons[i]}
                )
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(gen.prompt_tokens, done_tokens),
        }

    def _chunk(self, choices: list[dict], usage: dict | None = None, with_usage: bool = False) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": self.object + (".chunk" if self.chat else ""),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None or with_usage:  # include_usage: every chunk carries "usage" (null until the last)
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def _choice(
        self,
        i: int,
        text: str | None,
        lps: list[dict] | None,
        offset: int,
        reason: str | None,
        delta: dict | None = None,
    ) -> dict:
        if self.chat:
            return {
                "index": i,
                "delta": delta if delta is not None else ({"content": text} if text else {}),
                "logprobs": self._logprobs(lps),
                "finish_reason": reason,
            }
        return {"index": i, "text": text or "", "logprobs": self._logprobs(lps, offset), "finish_reason": reason}

    async def sse(self, gen: Generation, n: int, include_usage: bool) -> AsyncIterator[str]:
        done_tokens = 0
        offsets = [0] * n
        try:
            if self.chat:
                for i in range(n):
                    yield self._chunk(
                        [self._choice(i, None, None, 0, None, {"role": "assistant", "content": ""})],
                        with_usage=include_usage,
                    )
            async for ev in gen.events:
                if ev[0] == "delta":
                    _, i, text, lps = ev
                    yield self._chunk([self._choice(i, text, lps, offsets[i], None)], with_usage=include_usage)
                    offsets[i] += len(text)
                    continue
                _, i, reason, calls, toks, lps = ev
                done_tokens += toks
                if self.chat and calls:
                    for delta in _tool_call_stream(calls):
                        yield self._chunk(
                            [self._choice(i, None, None, 0, None, {"tool_calls": delta})], with_usage=include_usage
                        )
                yield self._chunk([self._choice(i, None, lps or None, offsets[i], reason)], with_usage=include_usage)
            if include_usage:
                yield self._chunk([], self.usage(gen.prompt_tokens, done_tokens))
        except Exception as exc:  # headers are sent: the error goes in the stream, then [DONE]
            log.exception("error while streaming %s", self.id)
            yield f"data: {json.dumps(error_body(str(exc), 'server_error'))}\n\n"
        yield "data: [DONE]\n\n"


def create_app(
    backend: Any, max_body_bytes: int = 4 << 20, read_timeout_s: float = 30.0, default_max_tokens: int = 256
) -> FastAPI:
    """The ASGI app around ``backend`` (an ``EngineBackend`` or ``ClientBackend``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(backend.close)  # SIGTERM -> uvicorn drains requests -> we stop the engine
        log.warning("jaxlab serve: %s stopped cleanly", backend.name)

    app = FastAPI(title="jaxlab serve", lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"{type(exc).__name__}: {exc}", "server_error")

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = bool(backend.alive)
        return JSONResponse({"status": "ok" if ok else "engine stopped"}, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "created": 0, "owned_by": "jaxlab"}]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> JSONResponse:
        if model_id != backend.name:
            return _error(
                404,
                f"model {model_id!r} not found; this server serves {backend.name!r}",
                "not_found_error",
                "model",
                "model_not_found",
            )
        return JSONResponse({"id": backend.name, "object": "model", "created": 0, "owned_by": "jaxlab"})

    async def handle(request: Request, chat: bool):
        try:
            body = await _read_json(request, max_body_bytes, read_timeout_s)
            spec: GenSpec = (parse_chat if chat else parse_completion)(body, default_max_tokens)
            name = body.get("model")
            if name is not None and name != backend.name:
                raise RequestError(
                    f"model {name!r} not found; this server serves {backend.name!r}",
                    "model",
                    status=404,
                    type_="not_found_error",
                    code="model_not_found",
                )
            stream, include_usage = stream_flags(body)
            check_spec(spec)
            gen = await backend.stream(spec)
        except RequestError as exc:
            return _error(exc.status, str(exc), exc.type, exc.param, exc.code, close=exc.status in (408, 413))
        except LLMRequestError as exc:
            return _error(400, str(exc), "invalid_request_error")
        except Exception as exc:
            log.exception("backend failed before generating")
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        route = _Route(chat, backend.name)
        if stream:
            return StreamingResponse(
                route.sse(gen, spec.n, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            return JSONResponse(await route.body(gen, spec.n))
        except LLMRequestError as exc:
            return _error(400, str(exc), "invalid_request_error")
        except Exception as exc:
            log.exception("backend failed while generating")
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, chat=False)

    return app


class BackgroundServer:
    """uvicorn on a thread (port 0 = ephemeral) for tests and notebooks; ``base_url`` ends in ``/v1``."""

    def __init__(self, backend: Any, host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> None:
        import uvicorn

        if not hasattr(backend, "stream"):  # a bare ChatClient
            from jaxlab.llm.backends import ClientBackend

            backend = ClientBackend(
                backend, app_kwargs.pop("model_name", None) or getattr(backend, "model", "") or "jaxlab"
            )
        app_kwargs.pop("model_name", None)
        self.backend = backend
        config = uvicorn.Config(
            create_app(backend, **app_kwargs),
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
