"""``jaxlab serve MODEL``: any client behind an OpenAI-compatible endpoint on localhost.

Outside agent tools (anything that takes an OpenAI base URL) can then drive
jaxlab models.  Built on the stdlib ``ThreadingHTTPServer`` so it needs no web
framework; each request runs on its own thread and the client's own
concurrency bound decides how many reach the model at once.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from jaxlab.llm.types import ChatClient, ChatRequest, LLMError, LLMRequestError

MAX_BODY_BYTES = 8 * 1024 * 1024


def _handler(client: ChatClient, model_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model",
                                                             "owned_by": "jaxlab"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path!r}; try POST /v1/chat/completions", "not_found")

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path!r}; try POST /v1/chat/completions", "not_found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY_BYTES:
                self._error(400, f"Content-Length: expected 1..{MAX_BODY_BYTES} bytes, got {length}",
                            "invalid_request_error")
                return
            try:
                body = json.loads(self.rfile.read(length))
                request = ChatRequest.from_openai(body)
            except json.JSONDecodeError as exc:
                self._error(400, f"body is not valid JSON: {exc}", "invalid_request_error")
                return
            except (LLMRequestError, TypeError, ValueError) as exc:
                self._error(400, str(exc), "invalid_request_error")
                return
            try:
                response = client.complete(request)
            except LLMRequestError as exc:
                self._error(400, str(exc), "invalid_request_error")
                return
            except LLMError as exc:
                self._error(500, str(exc), "server_error")
                return
            payload = response.to_openai(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()))
            payload["model"] = request.model or model_name
            self._send(200, payload)

    return Handler


def make_server(client: ChatClient, host: str = "127.0.0.1", port: int = 0,
                model_name: str | None = None) -> ThreadingHTTPServer:
    """Bind (port 0 = ephemeral) without serving yet; ``server.server_address`` has the port."""
    name = model_name or getattr(client, "model", "") or "jaxlab"
    server = ThreadingHTTPServer((host, port), _handler(client, name))
    server.daemon_threads = True
    return server


class BackgroundServer:
    """Context manager that serves on a thread; ``base_url`` is ready for an HTTP client."""

    def __init__(self, client: ChatClient, host: str = "127.0.0.1", port: int = 0,
                 model_name: str | None = None) -> None:
        self.server = make_server(client, host, port, model_name)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _load_smollm2() -> ChatClient:
    from jaxlab.llm.local import LocalClient

    return LocalClient.from_smollm2()


def _load_echo() -> ChatClient:
    from jaxlab.llm.scripted import echo_client

    return echo_client()


MODELS: dict[str, Callable[[], ChatClient]] = {"smollm2": _load_smollm2, "echo": _load_echo}


def main(argv: list[str]) -> int:
    """Entry point for ``jaxlab serve MODEL [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(prog="jaxlab serve",
                                     description="Serve a jaxlab model as an OpenAI-compatible endpoint.")
    parser.add_argument("model", help=f"one of {sorted(MODELS)} (echo replies with the last user message)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.model not in MODELS:
        parser.error(f"MODEL: expected one of {sorted(MODELS)}, got {args.model!r}")
    client = MODELS[args.model]()
    server = make_server(client, args.host, args.port, args.model)
    host, port = server.server_address[:2]
    print(f"serving {args.model} at http://{host}:{port}/v1/chat/completions (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
