"""A client over the in-process jaxlab generator (no server, no network).

The chat template comes from the tokenizer (so tools are rendered the way the
model was trained to see them); tool calls are parsed back out of the text.
``generate_fn`` is injectable so the client is testable without a model.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from jaxlab.llm.base import BaseClient
from jaxlab.llm.toolparse import parse_tool_calls
from jaxlab.llm.types import ChatRequest, ChatResponse, Choice, LLMRequestError, Usage

GenerateFn = Callable[..., Any]


class LocalClient(BaseClient):
    """Chat completions from ``generate(model, tokenizer, prompts, ...)``.

    One generate call per request with the prompt repeated ``n`` times, so a
    request for n samples is one batched decode.  Calls are serialised with a
    lock: the model and its device are shared, and batching happens per request.
    ``response_format`` is honoured by instruction only (no constrained
    decoding): a system note asks for JSON, and the caller validates.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        generate_fn: GenerateFn | None = None,
        model_name: str = "local",
        seed: int = 0,
    ) -> None:
        super().__init__(max_concurrency=1)
        if generate_fn is None:
            from jaxlab.generate import generate as generate_fn  # lazy: pulls in jax
        self.jax_model = model
        self.tokenizer = tokenizer
        self.generate_fn = generate_fn
        self.model = model_name
        self.seed = seed
        self._model_lock = threading.Lock()

    @classmethod
    def from_smollm2(cls, **kwargs: Any) -> "LocalClient":
        from jaxlab.models import load_smollm2

        model, tokenizer = load_smollm2()
        return cls(model, tokenizer, model_name="smollm2", **kwargs)

    def prompt(self, request: ChatRequest) -> str:
        """The chat template applied to normalised messages (tool turns, null content, content parts)."""
        from jaxlab.llm.backends import json_note
        from jaxlab.llm.chat_format import render_prompt

        return render_prompt(self.tokenizer, request.messages, request.tools, json_note(request.response_format))

    def _stop_ids(self) -> list[int] | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            return None
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]

    def _complete(self, request: ChatRequest) -> ChatResponse:
        if request.stop:
            raise LLMRequestError(
                "stop: stop strings are not supported by the local client; "
                "use max_tokens or the model's end-of-turn token"
            )
        prompt = self.prompt(request)
        key = None
        temperature = request.temperature or 0.0
        max_tokens = request.max_tokens or 512
        if temperature > 0:
            import jax

            key = jax.random.PRNGKey(request.seed if request.seed is not None else self.seed)
        with self._model_lock:
            out = self.generate_fn(
                self.jax_model,
                self.tokenizer,
                [prompt] * request.n,
                max_new_tokens=max_tokens,
                temperature=temperature,
                top_p=request.top_p,
                key=key,
                stop_token_ids=self._stop_ids(),
            )
        names = {t["function"]["name"] for t in request.tools} if request.tools else None
        choices = []
        for text, reason in zip(out.texts, out.finish_reasons):
            if names:
                visible, calls = parse_tool_calls(text, names)
                if calls:
                    choices.append(Choice(text=visible, tool_calls=tuple(calls), finish_reason="tool_calls"))
                    continue
            choices.append(Choice(text=text, finish_reason=reason))
        prompt_tokens = len(self.tokenizer(prompt)["input_ids"]) if callable(self.tokenizer) else 0
        completion_tokens = sum(len(t) for t in out.token_ids)
        return ChatResponse(
            choices=tuple(choices), usage=Usage(prompt_tokens * request.n, completion_tokens), model=self.model
        )
