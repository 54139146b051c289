"""Turn per-language texts into the token batches detection, evaluation and training read.

Batches are the trainer's dicts of ``[B, S]`` arrays (``input_ids``, ``targets``, ``loss_mask``).

* :func:`packed_samples` - detection samples: consecutive texts of one language joined (separated by
  EOS) and cut to exactly ``seq_len`` tokens, one sample per row (``attention_mask`` 0 on padding rows). PLND keeps a neuron for a language only
  when it is in the top r of *every* sample, so every sample is a full row of real tokens.
* :func:`sentence_batches` - evaluation: one text per row, preceded by EOS so its first token is scored
  too, right-padded with ``loss_mask`` 0, so per-language perplexity is over exactly the text's tokens.
* :class:`MixedStream` - training: an endless round-robin over languages of packed ``seq_len`` windows
  drawn in a seeded order, so every step sees every language equally often.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator, Sequence

import numpy as np

Encode = Callable[[str], Sequence[int]]


def _rows_to_batches(ids: np.ndarray, mask: np.ndarray, rows: int) -> list[dict[str, np.ndarray]]:
    """``[N, S+1]`` ids and ``[N, S]`` loss mask as batches of ``rows``; the last is padded with mask-0 rows."""
    pad = (-len(ids)) % rows
    ids = np.concatenate([ids, np.zeros((pad, ids.shape[1]), np.int32)])
    mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), np.int32)])
    return [
        {"input_ids": ids[i : i + rows, :-1], "targets": ids[i : i + rows, 1:], "loss_mask": mask[i : i + rows]}
        for i in range(0, len(ids), rows)
    ]


def packed_samples(
    texts: Sequence[str], encode: Encode, eos_id: int, seq_len: int, n_samples: int, rows: int, what: str
) -> list[dict[str, np.ndarray]]:
    """``n_samples`` rows of exactly ``seq_len`` counted tokens, texts packed in order (EOS between them).

    A sample starts at a text boundary; the text that crosses its end is cut, and the next sample starts
    with the next text. Raises naming ``what`` when the texts do not fill ``n_samples`` samples.
    """
    samples: list[list[int]] = []
    current: list[int] = []
    for text in texts:
        current.extend(list(encode(text)) + [eos_id])
        if len(current) >= seq_len + 1:
            samples.append(current[: seq_len + 1])
            current = []
            if len(samples) == n_samples:
                break
    if len(samples) < n_samples:
        raise ValueError(
            f"{what}: {len(texts)} texts fill {len(samples)} samples of {seq_len} tokens, fewer than "
            f"the {n_samples} asked for; lower the sample count or seq_len, or give more text"
        )
    ids = np.asarray(samples, np.int32)
    batches = _rows_to_batches(ids, np.ones((n_samples, seq_len), np.int32), rows)
    for b in batches:  # the statistics read ``attention_mask``: the padding rows of the last batch count nowhere
        b["attention_mask"] = b["loss_mask"].copy()
    return batches


def sentence_batches(
    texts: Sequence[str], encode: Encode, eos_id: int, max_len: int, rows: int, what: str
) -> list[dict[str, np.ndarray]]:
    """One text per row, ``[EOS] + tokens`` (all tokens scored), padded to the longest (at most ``max_len``).

    A text longer than ``max_len`` tokens keeps its first ``max_len``; an empty list fails naming ``what``.
    """
    if not texts:
        raise ValueError(f"{what}: no texts to evaluate")
    toks = [list(encode(t))[:max_len] for t in texts]
    toks = [t for t in toks if t]
    if not toks:
        raise ValueError(f"{what}: every text encodes to zero tokens")
    width = max(len(t) for t in toks)
    ids = np.zeros((len(toks), width + 1), np.int32)
    mask = np.zeros((len(toks), width), np.int32)
    for i, t in enumerate(toks):
        ids[i, 0] = eos_id
        ids[i, 1 : len(t) + 1] = t
        mask[i, : len(t)] = 1
    return _rows_to_batches(ids, mask, rows)


def batch_tokens(batches: Sequence[dict[str, np.ndarray]]) -> int:
    """Counted (``loss_mask`` 1) tokens over ``batches``."""
    return int(sum(int(b["loss_mask"].sum()) for b in batches))


class MixedStream:
    """Endless training batches: packed ``seq_len`` windows, languages in turn, texts reshuffled each pass.

    Row *k* of the stream comes from language ``k % len(langs)``, so a batch of ``batch_size`` rows holds
    every language ``batch_size / len(langs)`` times (±1). The same seed gives the same stream.
    """

    def __init__(
        self, texts: dict[str, Sequence[str]], encode: Encode, eos_id: int, seq_len: int, batch_size: int, seed: int = 0
    ):
        empty = [lang for lang, t in texts.items() if not t]
        if not texts or empty:
            raise ValueError(f"training texts: every language needs text, {empty or 'none'} has none")
        self.langs = list(texts)
        self.seq_len, self.batch_size = seq_len, batch_size
        self._gens = {
            lang: self._windows(list(texts[lang]), encode, eos_id, seed + i) for i, lang in enumerate(self.langs)
        }
        self._next = 0

    def _windows(self, texts: list[str], encode: Encode, eos_id: int, seed: int) -> Iterator[list[int]]:
        rng = random.Random(seed)
        cache: dict[int, list[int]] = {}
        buf: list[int] = []
        while True:  # every text adds at least its EOS, so the buffer always fills a window eventually
            order = list(range(len(texts)))
            rng.shuffle(order)
            for i in order:
                if i not in cache:
                    cache[i] = list(encode(texts[i])) + [eos_id]
                buf.extend(cache[i])
                while len(buf) >= self.seq_len + 1:
                    yield buf[: self.seq_len + 1]
                    buf = buf[self.seq_len + 1 :]

    def __iter__(self) -> "MixedStream":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rows = []
        for _ in range(self.batch_size):
            rows.append(next(self._gens[self.langs[self._next % len(self.langs)]]))
            self._next += 1
        ids = np.asarray(rows, np.int32)
        return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones_like(ids[:, 1:])}
