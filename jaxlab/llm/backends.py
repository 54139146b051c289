"""What ``jaxlab serve`` generates with: a batching jaxlab model, or any :class:`ChatClient`.

Both expose one async call, :meth:`stream`, that yields events for a
:class:`GenSpec`; the HTTP layer turns events into SSE chunks or one JSON body.
Events: ``("delta", index, text, logprobs)``, ``("finish", index, reason,
tool_calls, completion_tokens, logprobs)``; ``logprobs`` is ``None`` or a list
of OpenAI token entries (``{"token", "logprob", "bytes", "top_logprobs"}``).
An exception raised from the iterator becomes the HTTP
error (``LLMRequestError`` -> 400, anything else -> 500 with its message).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from jaxlab.llm.chat_format import normalise_messages, render_prompt
from jaxlab.llm.engine import BatchEngine, Job
from jaxlab.llm.grammar import forced_tool_format
from jaxlab.llm.toolparse import parse_tool_calls
from jaxlab.llm.types import ChatClient, ChatRequest, LLMRequestError, ToolCall


@dataclass
class GenSpec:
    """A chat or plain-completion request after HTTP validation (the fields a backend acts on)."""

    messages: list[dict] | None = None
    prompt: str | None = None
    tools: list[dict] = field(default_factory=list)
    tool_choice: Any = None
    response_format: dict | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # None: off; k >= 0: report the chosen token and k alternatives


@dataclass
class Generation:
    """``prompt_tokens`` is known before the first event; ``events`` is the async stream."""

    prompt_tokens: int
    events: AsyncIterator[tuple]


def json_note(response_format: dict | None) -> str | None:
    """Instruction for ``json_object`` / ``json_schema``: the engine also constrains decoding to the schema,
    but a model that is told what is wanted fills the fields with sense, not just valid syntax."""
    if not response_format or response_format.get("type") == "text":
        return None
    note = "Reply with a single JSON object and nothing else."
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema is not None:
        note += f" It must match this JSON schema: {json.dumps(schema)}"
    return note


class EngineBackend:
    """A jaxlab model behind a :class:`BatchEngine`: real token streaming and cross-request batching."""

    def __init__(self, engine: BatchEngine, name: str) -> None:
        self.engine, self.name = engine, name

    @property
    def alive(self) -> bool:
        return self.engine.alive

    def close(self) -> None:
        self.engine.close()

    async def stream(self, spec: GenSpec) -> Generation:
        if spec.messages is not None:
            text = render_prompt(self.engine.tokenizer, spec.messages, spec.tools, json_note(spec.response_format))
        else:
            text = spec.prompt or ""
        ids = self.engine.encode(text)
        self.engine.check(len(ids), spec.max_tokens, spec.n)  # 400s before compiling a grammar
        grammar = None
        fmt = forced_tool_format(spec.tools, spec.tool_choice) or spec.response_format
        if fmt and fmt.get("type", "text") != "text":
            grammar = await asyncio.to_thread(self.engine.grammars.compile, fmt)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple] = asyncio.Queue()
        job = Job(
            prompt_ids=ids,
            max_tokens=spec.max_tokens,
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            seed=spec.seed if spec.seed is not None else random.getrandbits(31),
            stop=spec.stop,
            logprobs=spec.logprobs,
            grammar=grammar,
            emit=lambda ev: loop.call_soon_threadsafe(q.put_nowait, ev),
        )
        self.engine.submit(job)  # raises LLMRequestError for a prompt that cannot fit
        names = {t["function"]["name"] for t in spec.tools if isinstance(t, dict) and "function" in t}
        parse_tools = bool(names) and spec.tool_choice != "none"
        return Generation(len(ids), self._events(job, q, spec.n, names if parse_tools else None))

    async def _events(self, job: Job, q: asyncio.Queue, n: int, tool_names: set[str] | None) -> AsyncIterator[tuple]:
        texts = [""] * n
        held: list[list[dict] | None] = [None] * n
        left = n
        try:
            while left:
                ev = await q.get()
                if ev[0] == "error":
                    raise ev[1]
                if ev[0] == "delta":
                    texts[ev[1]] += ev[2]
                    if tool_names is None:  # with tools the text is held back until it can be parsed
                        yield ev
                    elif ev[3] is not None:
                        held[ev[1]] = (held[ev[1]] or []) + ev[3]
                    continue
                _, index, reason, n_tokens, lps = ev
                if held[index] is not None:
                    lps = held[index] + (lps or [])
                left -= 1
                calls: tuple[ToolCall, ...] = ()
                if tool_names is not None:
                    visible, parsed = parse_tool_calls(texts[index], tool_names)
                    if parsed:
                        calls, reason = tuple(parsed), "tool_calls"
                        texts[index] = visible
                    if texts[index]:
                        yield ("delta", index, texts[index], lps)
                        lps = [] if lps is not None else None
                yield ("finish", index, reason, calls, n_tokens, lps)
        finally:
            job.cancelled.set()  # client went away or we are done: free the rows


class ClientBackend:
    """Any ``ChatClient`` (echo, scripted, an upstream endpoint): one delta per choice, no batching."""

    def __init__(self, client: ChatClient, name: str) -> None:
        self.client, self.name = client, name
        self.alive = True

    def close(self) -> None:
        self.alive = False

    async def stream(self, spec: GenSpec) -> Generation:
        messages = spec.messages if spec.messages is not None else [{"role": "user", "content": spec.prompt or ""}]
        request = ChatRequest(
            messages=tuple(normalise_messages(messages)),
            tools=tuple(spec.tools),
            response_format=spec.response_format,
            temperature=spec.temperature,
            top_p=spec.top_p,
            max_tokens=spec.max_tokens,
            n=spec.n,
            stop=spec.stop,
            seed=spec.seed,
            model=self.name,
            tool_choice=spec.tool_choice,
        )
        response = await asyncio.to_thread(self.client.complete, request)
        if len(response.choices) != spec.n:
            raise RuntimeError(f"backend returned {len(response.choices)} choices for n={spec.n}")

        async def events() -> AsyncIterator[tuple]:
            per = response.usage.completion_tokens // max(1, len(response.choices))
            for i, c in enumerate(response.choices):
                if c.text:
                    yield ("delta", i, c.text, None)
                yield ("finish", i, c.finish_reason, c.tool_calls, per, None)

        return Generation(response.usage.prompt_tokens, events())


def check_spec(spec: GenSpec) -> None:
    """Value checks shared by both backends (the HTTP layer already checked types)."""
    if spec.max_tokens < 1:
        raise LLMRequestError(f"max_tokens: expected an integer >= 1, got {spec.max_tokens}")
    if spec.n < 1:
        raise LLMRequestError(f"n: expected an integer >= 1, got {spec.n}")
