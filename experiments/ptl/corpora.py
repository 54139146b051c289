"""Offline corpora for PTL: code (train / held-out), English text, calibration, a code task.

Code
    The Python standard library's ``.py`` sources (``jaxlab.train.data``), split
    into train / held-out files by a hash of the path. Tuning and the task
    calibration samples come from train files; code perplexity and the task
    from held-out files.
English text
    No dataset can be downloaded, so general text is ``pydoc_data.topics``: the
    Python language reference rendered as plain English prose (79 topics,
    ~465k characters), shipped with every CPython. Topics are split by a hash of
    their name into calibration (the seed's "general text" whose strongly active
    neurons are protected) and held-out (text perplexity). It is technical
    English, but English sentences rather than code.
Task
    Next-line multiple choice on held-out stdlib code (:func:`next_line_items`):
    given the preceding code, pick the real next line among 4 (3 distractors are
    real lines from other held-out files, re-indented like the true line). It
    measures whether the model still predicts code structure; chance is 25%.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jaxlab.train import data

Encode = Callable[[str], Sequence[int]]


def _hash_frac(name: str) -> float:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2.0**64


def english_topics(heldout_fraction: float = 0.3) -> tuple[list[str], list[str]]:
    """(calibration texts, held-out texts) from ``pydoc_data.topics``, split by topic name."""
    from pydoc_data.topics import topics

    calib, held = [], []
    for name in sorted(topics):
        (held if _hash_frac(name) < heldout_fraction else calib).append(topics[name])
    return calib, held


def _pack(token_lists: Sequence[Sequence[int]], eos_id: int, seq_len: int, n_batches: int, batch_size: int,
          what: str) -> list[dict[str, np.ndarray]]:
    """Concatenate documents (EOS-separated) and cut ``n_batches`` of ``[batch_size, seq_len]`` windows."""
    stream: list[int] = []
    need = n_batches * batch_size * (seq_len + 1)
    for toks in token_lists:
        stream.extend(toks)
        stream.append(eos_id)
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise ValueError(f"data: the {what} corpus has {len(stream)} tokens, fewer than the {need} needed for "
                         f"{n_batches} batches of {batch_size} x {seq_len}; lower the batch counts or seq_len")
    arr = np.asarray(stream[:need], np.int32).reshape(n_batches, batch_size, seq_len + 1)
    return [{"input_ids": a[:, :-1], "targets": a[:, 1:], "loss_mask": np.ones((batch_size, seq_len), np.int32)}
            for a in arr]


def text_batches(texts: Sequence[str], encode: Encode, eos_id: int, seq_len: int, n_batches: int,
                 batch_size: int, what: str) -> list[dict[str, np.ndarray]]:
    return _pack([encode(t) for t in texts], eos_id, seq_len, n_batches, batch_size, what)


def file_batches(files: Sequence[Path], encode: Encode, eos_id: int, seq_len: int, n_batches: int,
                 batch_size: int, what: str, seed: int) -> list[dict[str, np.ndarray]]:
    """Fixed batches from files in a seeded order (tokenizing only what is needed)."""
    order = list(files)
    random.Random(seed).shuffle(order)

    def docs():
        for f in order:
            yield encode(Path(f).read_text(encoding="utf-8", errors="replace"))

    return _pack(docs(), eos_id, seq_len, n_batches, batch_size, what)


@dataclass(frozen=True)
class Choice:
    """One multiple-choice item, already tokenized: the context and 4 candidate lines (answer first)."""

    context: list[int]
    candidates: list[list[int]]


def _good_line(line: str) -> bool:
    s = line.strip()
    return len(s) >= 16 and not s.startswith(("#", '"', "'")) and len(s) <= 100


def next_line_items(files: Sequence[Path], encode: Encode, n_items: int, context_tokens: int,
                    seed: int) -> list[Choice]:
    """``n_items`` next-line multiple-choice items from held-out code files (answer is candidate 0)."""
    rng = random.Random(seed)
    per_file = {}
    for f in sorted(files):
        lines = Path(f).read_text(encoding="utf-8", errors="replace").splitlines()
        idx = [i for i, ln in enumerate(lines) if i >= 8 and _good_line(ln)]
        if idx:
            per_file[f] = (lines, idx)
    names = sorted(per_file)
    if len(names) < 4:
        raise ValueError(f"data: need at least 4 held-out files with code lines for the task, got {len(names)}")
    items = []
    for _ in range(n_items):
        f = rng.choice(names)
        lines, idx = per_file[f]
        i = rng.choice(idx)
        true = lines[i]
        indent = true[: len(true) - len(true.lstrip())]
        others = rng.sample([n for n in names if n != f], 3)
        distract = [indent + per_file[o][0][rng.choice(per_file[o][1])].strip() for o in others]
        ctx = list(encode("\n".join(lines[max(0, i - 40):i]) + "\n"))[-context_tokens:]
        items.append(Choice(ctx, [list(encode(c))[:32] for c in [true] + distract]))
    return items


def code_splits(root: str | None, heldout_fraction: float) -> tuple[list[Path], list[Path]]:
    files = data.stdlib_python_files(root)
    return data.split_files(files, heldout_fraction, root or data.stdlib_root())


def byte_encoder() -> tuple[Encode, int]:
    """A byte-level tokenizer for the tiny test models (vocab 256; NUL is EOS)."""
    return (lambda text: list(text.encode("utf-8"))), 0


def hf_encoder(tokenizer: Any) -> tuple[Encode, int]:
    return data.hf_encoder(tokenizer), tokenizer.eos_token_id
