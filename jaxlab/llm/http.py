"""OpenAI-compatible HTTP client (stdlib only): retries 429/5xx, explains 4xx.

Works with any ``/v1/chat/completions`` server: OpenAI, vLLM, SGLang, or
``jaxlab serve``.  Streaming is deliberately not implemented: experiments
want whole completions and token usage.
"""
from __future__ import annotations

import json
import os
import random
import socket
import time
import urllib.error
import urllib.request

from jaxlab.llm.base import BaseClient
from jaxlab.llm.types import ChatRequest, ChatResponse, LLMError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class HTTPStatusError(LLMError):
    """The server answered with an error status; ``status`` and ``body`` say why."""

    def __init__(self, status: int, body: str, url: str) -> None:
        self.status, self.body, self.url = status, body, url
        detail = body
        try:
            err = json.loads(body).get("error")
            detail = err.get("message", body) if isinstance(err, dict) else (err or body)
        except (ValueError, AttributeError):
            pass
        hint = {401: " (check the API key env var)", 404: " (check base_url and model name)"}.get(status, "")
        super().__init__(f"HTTP {status} from {url}{hint}: {str(detail)[:500]}")


class OpenAIHTTPClient(BaseClient):
    """Client for an OpenAI-compatible endpoint.

    ``base_url`` and the key default to ``$JAXLAB_LLM_BASE_URL`` /
    ``$OPENAI_BASE_URL`` and ``$<api_key_env>``; a missing base URL is an error
    that says which variables were looked at.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120.0, max_retries: int = 4,
                 backoff_s: float = 1.0, max_concurrency: int = 8) -> None:
        super().__init__(max_concurrency)
        base_url = base_url or os.environ.get("JAXLAB_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise LLMError("OpenAIHTTPClient: no base_url given and neither $JAXLAB_LLM_BASE_URL nor "
                           "$OPENAI_BASE_URL is set (expected e.g. http://127.0.0.1:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def _post(self, body: dict) -> dict:
        url = f"{self.base_url}/chat/completions"
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as exc:
                err = HTTPStatusError(exc.code, exc.read().decode(errors="replace"), url)
                if exc.code not in RETRY_STATUS:
                    raise err from None
                last, retry_after = err, exc.headers.get("Retry-After") if exc.headers else None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                last = LLMError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}")
            except json.JSONDecodeError as exc:
                raise LLMError(f"{url} returned a body that is not JSON: {exc}") from exc
            if attempt < self.max_retries:
                delay = self.backoff_s * (2 ** attempt) * (0.5 + random.random() / 2)
                if retry_after is not None:
                    try:
                        delay = max(delay, float(retry_after))
                    except ValueError:
                        pass
                time.sleep(delay)
        raise LLMError(f"giving up after {self.max_retries + 1} attempts: {last}") from last

    def _complete(self, request: ChatRequest) -> ChatResponse:
        body = request.to_openai()
        body["model"] = request.model or self.model
        return ChatResponse.from_openai(self._post(body))
