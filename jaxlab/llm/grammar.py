"""``response_format`` as a token mask: JSON (any object, or one JSON schema) by constrained decoding.

The grammar work is xgrammar's (the library vLLM and SGLang use): a schema
compiles once per engine (cached by its text) into a grammar; each output row
gets its own matcher, which fills the packed bitmask of tokens allowed next
(``int32[ceil(V/32)]``, the layout :func:`jaxlab.generate.unpack_bitmask`
reads inside the jitted step) and advances on every sampled token.  The stop
token is allowed exactly when the JSON is complete, so a constrained row ends
with valid JSON unless ``max_tokens`` cuts it first (``finish_reason: length``).
Whitespace between JSON tokens is fixed (``any_whitespace=False``) so a small
model cannot spend its budget on blank lines.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Sequence

import numpy as np

from jaxlab.llm.types import LLMRequestError


def forced_tool_format(tools: Sequence[dict], tool_choice: Any) -> dict | None:
    """``tool_choice: "required"`` or ``{"function": {"name"}}`` as a JSON schema the output must match:
    ``{"name": <one of the tools>, "arguments": <that tool's parameters>}``, which the tool-call parser reads
    back as a call.  ``None`` when the model may answer in text (``auto`` / ``none`` / no tools)."""
    fns = [t["function"] for t in tools]
    if isinstance(tool_choice, dict):
        name = tool_choice["function"].get("name")
        fns = [f for f in fns if f.get("name") == name]
        if not fns:
            raise LLMRequestError(
                f"tool_choice.function.name: {name!r} is not one of the request's tools "
                f"{[t['function']['name'] for t in tools]}"
            )
    elif tool_choice != "required" or not fns:
        if tool_choice == "required":
            raise LLMRequestError("tool_choice: 'required' needs at least one tool in 'tools'")
        return None
    options = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "arguments"],
            "properties": {"name": {"const": f["name"]}, "arguments": f.get("parameters") or {"type": "object"}},
        }
        for f in fns
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema, "strict": True}}


def bitmask_words(vocab_size: int) -> int:
    """int32 words per row of a packed token bitmask."""
    return (vocab_size + 31) // 32


class GrammarBook:
    """Compiles ``response_format`` bodies for one tokenizer; thread-safe, compiled grammars cached."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> None:
        self.tokenizer, self.vocab_size, self.stop_ids = tokenizer, vocab_size, sorted(stop_ids)
        self._compiler: Any = None
        self._lock = threading.Lock()

    def _compiler_once(self) -> Any:
        import xgrammar as xgr

        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_ids or None
                )
                self._compiler = xgr.GrammarCompiler(info, cache_enabled=True)
            return self._compiler

    def compile(self, response_format: dict | None) -> Any | None:
        """A compiled grammar for ``json_object`` / ``json_schema``, ``None`` for text; 400 on a bad schema."""
        if not response_format or response_format.get("type", "text") == "text":
            return None
        compiler = self._compiler_once()
        if response_format["type"] == "json_object":
            return compiler.compile_builtin_json_grammar()
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise LLMRequestError("response_format.json_schema: expected {'name': ..., 'schema': {...}}")
        schema = spec["schema"]
        if not isinstance(schema, (dict, bool)):
            raise LLMRequestError(
                f"response_format.json_schema.schema: expected a JSON schema object, got {type(schema).__name__}"
            )
        try:
            return compiler.compile_json_schema(
                json.dumps(schema, sort_keys=True), any_whitespace=False, strict_mode=bool(spec.get("strict", True))
            )
        except Exception as exc:  # xgrammar raises RuntimeError / ValueError on schemas it cannot express
            raise LLMRequestError(
                f"response_format.json_schema.schema: cannot be compiled to a grammar: {exc}"
            ) from exc


class RowMatcher:
    """The grammar state of one output row."""

    def __init__(self, compiled: Any, words: int) -> None:
        import torch
        import xgrammar as xgr

        self._m = xgr.GrammarMatcher(compiled)
        self._buf = torch.zeros((1, words), dtype=torch.int32)

    def allowed(self) -> np.ndarray:
        """Packed bitmask ``int32[words]`` of the tokens that keep the output a valid prefix."""
        self._m.fill_next_token_bitmask(self._buf, 0)
        return self._buf.numpy()[0].copy()

    def accept(self, token: int) -> bool:
        """Advance on ``token``; False if the grammar rejects it (cannot happen for masked sampling)."""
        return bool(self._m.accept_token(int(token)))

    @property
    def complete(self) -> bool:
        return bool(self._m.is_terminated())


def allowed_ids(words: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids set in a packed bitmask (numpy reference of the in-jit unpacking, for tests and debugging)."""
    bits = np.unpackbits(np.ascontiguousarray(words, dtype="<i4").view(np.uint8), bitorder="little")
    return np.nonzero(bits[:vocab_size])[0]
