"""Stop strings matched on device: an Aho-Corasick automaton over bytes, lifted to whole tokens.

A stop string can span several tokens ("\\n\\n" as two newline tokens) or end in the middle of one
(" Answer:" inside a token " Answer:\\n"), so comparing token ids with a list of stop ids misses
most of them, and decoding on the host after every step costs a round trip. Instead every token is
given its bytes (what the tokenizer's ``decode`` appends for it) and an automaton for all stop
strings is built over bytes; feeding a token's bytes from each automaton state gives two tables,
``next_state[S, V]`` and ``hit[S, V]`` (a stop string completed inside that token). The jitted
decode loop carries one automaton state per row and looks both tables up with the sampled token,
so a row is finished at exactly the token where its decoded text first contains a stop string.

This is exact whenever ``decode(a + b) == decode(a) + decode(b)`` at the byte level, which holds
for byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen) and for byte models; :func:`tokenizer_token_bytes`
reads the bytes from a byte-level tokenizer's vocabulary and falls back to ``decode([t])`` per token
for other tokenizers (exact there only where each token decodes to whole characters).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def _automaton(patterns: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Aho-Corasick over bytes: ``(delta[S, 256], accept[S])``, state 0 the root."""
    goto: list[dict[int, int]] = [{}]
    accept = [False]
    for pat in patterns:
        s = 0
        for b in pat:
            if b not in goto[s]:
                goto.append({})
                accept.append(False)
                goto[s][b] = len(goto) - 1
            s = goto[s][b]
        accept[s] = True
    n = len(goto)
    delta = np.zeros((n, 256), np.int32)
    fail = [0] * n
    queue = deque()
    for b, t in goto[0].items():
        delta[0, b] = t
        queue.append(t)
    while queue:  # breadth first: a state's failure target is complete before the state itself
        s = queue.popleft()
        accept[s] = accept[s] or accept[fail[s]]
        delta[s] = delta[fail[s]]
        for b, t in goto[s].items():
            delta[s, b] = t
            fail[t] = int(delta[fail[s], b]) if s else 0
            queue.append(t)
    return delta, np.asarray(accept)


@dataclass(frozen=True)
class StopMatcher:
    """The per-token transition tables for a set of stop strings (numpy; the generator moves them on device)."""

    stops: tuple[str, ...]
    next_state: np.ndarray
    """int32 [S, V]: automaton state after a token's bytes, from each state."""
    hit: np.ndarray
    """bool [S, V]: some stop string is completed inside the token's bytes, from each state."""

    @classmethod
    def build(cls, stops: Sequence[str], token_bytes: Sequence[bytes], vocab_size: int | None = None) -> "StopMatcher":
        """Tables for ``stops`` over a vocabulary whose token ``t`` decodes to ``token_bytes[t]``; ids from
        ``len(token_bytes)`` up to ``vocab_size`` (a model's padded embedding rows) decode to nothing."""
        stops = tuple(stops)
        if vocab_size is not None:
            if vocab_size < len(token_bytes):
                raise ValueError(f"vocab_size: {vocab_size} is smaller than the {len(token_bytes)} token byte strings")
            token_bytes = list(token_bytes) + [b""] * (vocab_size - len(token_bytes))
        if not stops or any(not isinstance(s, str) or not s for s in stops):
            raise ValueError(f"stop: expected one or more non-empty strings, got {list(stops)!r}")
        delta, accept = _automaton([s.encode("utf-8") for s in stops])
        vocab = len(token_bytes)
        width = max(1, max(len(b) for b in token_bytes))
        table = np.zeros((vocab, width), np.int32)
        lengths = np.zeros(vocab, np.int32)
        for t, b in enumerate(token_bytes):
            table[t, : len(b)] = np.frombuffer(b, np.uint8)
            lengths[t] = len(b)
        n = delta.shape[0]
        state = np.repeat(np.arange(n, dtype=np.int32)[:, None], vocab, axis=1)
        hit = np.zeros((n, vocab), bool)
        for j in range(width):  # one byte column at a time, every (state, token) pair at once
            active = (j < lengths)[None, :] & ~hit
            moved = delta[state, table[None, :, j]]
            hit |= active & accept[moved]
            state = np.where(active, moved, state)
        return cls(stops, state, hit)

    def first_hit(self, tokens: Sequence[int]) -> int | None:
        """Host replay of the device scan: the index of the token completing a stop string, or None."""
        s = 0
        for i, t in enumerate(tokens):
            if self.hit[s, t]:
                return i
            s = int(self.next_state[s, t])
        return None


def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}


def tokenizer_token_bytes(tokenizer: Any, skip_special_tokens: bool = True) -> list[bytes]:
    """The bytes each token id appends to ``tokenizer.decode(ids, skip_special_tokens=...)``.

    Byte-level BPE vocabularies store every byte as one printable character (GPT-2's table), so
    the bytes are read back exactly; added tokens decode to their content (special ones to nothing
    when skipped). Other tokenizers fall back to ``decode([t])`` per token.
    """
    vocab = len(tokenizer)
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    added = {i: tok for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    special = set(getattr(tokenizer, "all_special_ids", []))
    out: list[bytes] = []
    if type(decoder).__name__ == "ByteLevel":
        table = _byte_decoder()
        for t, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocab)))):
            if t in added:
                out.append(
                    b""
                    if (skip_special_tokens and (t in special or added[t].special))
                    else str(added[t].content).encode("utf-8")
                )
            elif piece is None:
                out.append(b"")
            else:
                out.append(bytes(table[ch] for ch in piece))
        return out
    for t in range(vocab):
        out.append(tokenizer.decode([t], skip_special_tokens=skip_special_tokens).encode("utf-8"))
    return out


def byte_token_bytes(vocab: int = 256, eos_id: int = 0) -> list[bytes]:
    """A byte model's tokens (id = byte value; EOS and ids >= 256 decode to nothing)."""
    return [b"" if t == eos_id or t >= 256 else bytes([t]) for t in range(vocab)]
