"""Build a client from a config block, so experiments switch backends in YAML only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxlab.llm.base import BaseClient
from jaxlab.llm.policy import ModelPolicy
from jaxlab.llm.types import ChatClient


@dataclass(frozen=True)
class ClientConfig:
    """``kind: http`` talks to ``base_url`` (or $JAXLAB_LLM_BASE_URL / $OPENAI_BASE_URL);
    ``kind: local`` runs a jaxlab model in-process; ``kind: echo`` answers every request with its last
    user message (wiring checks and tests, no model).  ``cache_dir`` (when set)
    stores every response on disk keyed by the full request, so reruns resume.
    ``policy`` (http only) says which request params the model accepts, e.g. for
    GPT-5-mini ``{token_param: max_completion_tokens, sampling: [], reasoning_effort: low}``;
    ``timeout_s`` bounds one attempt, ``deadline_s`` the whole call with its retries."""

    kind: Literal["http", "local", "echo"] = "local"
    model: str = "smollm2"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 4
    deadline_s: float = 600.0
    max_concurrency: int = 8
    cache_dir: str | None = None
    policy: ModelPolicy | None = None


OPERATIONAL_KEYS = ("api_key_env", "timeout_s", "max_retries", "deadline_s", "max_concurrency", "cache_dir")
"""``ClientConfig`` fields that change how calls are made, not what they return (left out of run fingerprints)."""


def make_client(cfg: ClientConfig) -> ChatClient:
    client: BaseClient
    if cfg.kind == "http":
        from jaxlab.llm.http import OpenAIHTTPClient

        client = OpenAIHTTPClient(
            cfg.model,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            deadline_s=cfg.deadline_s,
            max_concurrency=cfg.max_concurrency,
            policy=cfg.policy,
        )
    elif cfg.kind == "local":
        if cfg.model != "smollm2":
            raise ValueError(f"client.model: the local client knows 'smollm2', got {cfg.model!r}")
        from jaxlab.llm.local import LocalClient

        client = LocalClient.from_smollm2()
    elif cfg.kind == "echo":
        from jaxlab.llm.scripted import echo_client

        client = echo_client()
    else:
        raise ValueError(f"client.kind: expected 'http', 'local' or 'echo', got {cfg.kind!r}")
    if cfg.cache_dir:
        from jaxlab.llm.cache import CachedClient

        client = CachedClient(client, cfg.cache_dir, max_concurrency=cfg.max_concurrency)
    return client
