"""Offline corpora for PTL: code (train / held-out), English text, calibration, a code task.

Code
    The Python standard library's ``.py`` sources (``jaxlab.train.data``), split
    into train / held-out by a hash of each file's *name family*
    (:func:`name_family`: ``encodings/cp850.py`` and ``encodings/cp858.py`` are
    one family and land on the same side), with ``pydoc_data/topics.py`` (the
    English corpus) left out of code altogether. The held-out side then drops
    codec tables (:func:`is_codec_table`) and every file whose 4-line shingles
    are more than ``max_overlap`` contained in the training split
    (:func:`shingle_containment`); see :func:`code_splits`. Tuning and the task
    calibration samples come from train files; code perplexity and the task
    from the cleaned held-out files.
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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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


def eval_windows(
    docs: Iterable[Sequence[int]], eos_id: int, seq_len: int, n_windows: int, rows: int, what: str
) -> list[dict[str, np.ndarray]]:
    """``n_windows`` packed ``seq_len`` windows in batches of ``rows``; the last batch is padded with
    zero-``loss_mask`` rows (so every batch has one shape). Raises naming the corpus when it is too small."""
    need = n_windows * (seq_len + 1)
    stream: list[int] = []
    for toks in docs:
        stream.extend(toks)
        stream.append(eos_id)
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise ValueError(
            f"data: the {what} corpus has {len(stream)} tokens, fewer than the {need} needed for "
            f"{n_windows} windows of {seq_len} (data.eval_tokens / data.seq_len); lower data.eval_tokens"
        )
    arr = np.asarray(stream[:need], np.int32).reshape(n_windows, seq_len + 1)
    pad = (-n_windows) % rows
    mask = np.ones((n_windows + pad, seq_len), np.int32)
    mask[n_windows:] = 0
    arr = np.concatenate([arr, np.zeros((pad, seq_len + 1), np.int32)])
    return [
        {"input_ids": arr[i : i + rows, :-1], "targets": arr[i : i + rows, 1:], "loss_mask": mask[i : i + rows]}
        for i in range(0, len(arr), rows)
    ]


def file_docs(files: Sequence[Path], encode: Encode, seed: int) -> Iterator[list[int]]:
    """Token lists of ``files`` in a seeded order, tokenized lazily."""
    order = list(files)
    random.Random(seed).shuffle(order)
    for f in order:
        yield list(encode(Path(f).read_text(encoding="utf-8", errors="replace")))


_TOP_LEVEL = re.compile(r"\n(?=(?:def |class |async def |@))")


def code_units(text: str) -> list[str]:
    """A source file cut before every top-level ``def`` / ``class`` / decorator: whole definitions
    (decorators stay with the definition they decorate)."""
    units: list[str] = []
    carry = ""
    for u in _TOP_LEVEL.split(text):
        u = u.strip("\n")
        if not u.strip():
            continue
        if u.startswith("@") and all(ln.startswith("@") for ln in u.splitlines()):
            carry += u + "\n"
            continue
        units.append(carry + u)
        carry = ""
    if carry:
        units.append(carry.rstrip("\n"))
    return units


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def sample_batches(
    docs: Sequence[str],
    encode: Encode,
    eos_id: int,
    seq_len: int,
    n_batches: int,
    batch_size: int,
    what: str,
    seed: int,
    min_tokens: int = 16,
) -> list[dict[str, np.ndarray]]:
    """Document-level calibration samples: ``n_batches * batch_size`` whole documents of ``min_tokens`` to
    ``seq_len`` tokens, drawn in a seeded order, one per row, right-padded with ``loss_mask`` 0.

    A row's last counted token is its document's last token: where the seed reads its signal.
    """
    need = n_batches * batch_size
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    picked: list[list[int]] = []
    for i in order:
        toks = list(encode(docs[i]))
        if min_tokens <= len(toks) <= seq_len:
            picked.append(toks)
            if len(picked) == need:
                break
    if len(picked) < need:
        raise ValueError(
            f"data: the {what} corpus has {len(picked)} documents of {min_tokens}..{seq_len} tokens, "
            f"fewer than the {need} calibration samples asked for ({n_batches} batches x {batch_size}); "
            f"lower the batch counts or raise data.seq_len"
        )
    ids = np.zeros((need, seq_len), np.int32)
    targets = np.zeros((need, seq_len), np.int32)
    mask = np.zeros((need, seq_len), np.int32)
    for r, toks in enumerate(picked):
        ids[r, : len(toks)] = toks
        targets[r, : len(toks)] = toks[1:] + [eos_id]
        mask[r, : len(toks)] = 1
    return [
        {
            "input_ids": ids[i : i + batch_size],
            "targets": targets[i : i + batch_size],
            "loss_mask": mask[i : i + batch_size],
        }
        for i in range(0, need, batch_size)
    ]


@dataclass(frozen=True)
class Choice:
    """One multiple-choice item, already tokenized: the context and 4 candidate lines (answer first)."""

    context: list[int]
    candidates: list[list[int]]


def _good_line(line: str) -> bool:
    s = line.strip()
    return len(s) >= 16 and not s.startswith(("#", '"', "'")) and len(s) <= 100


def next_line_items(
    files: Sequence[Path], encode: Encode, n_items: int, context_tokens: int, seed: int
) -> list[Choice]:
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
        ctx = list(encode("\n".join(lines[max(0, i - 40) : i]) + "\n"))[-context_tokens:]
        items.append(Choice(ctx, [list(encode(c))[:32] for c in [true] + distract]))
    return items


ENGLISH_MODULE = "pydoc_data/topics.py"
"""The English corpus' source file: never part of the code corpus (on either side)."""
_HEX_LINE = re.compile(r"0x[0-9A-Fa-f]{2,}")
_CODEC_MARKERS = (
    "decoding_table = (",
    "encoding_map = {",
    "decoding_map = codecs.make_identity_dict",
    "decoding_map.update(",
)


def name_family(rel: str) -> str:
    """``dir/letters``: the file's directory plus the leading letters of its stem (underscores stripped).

    ``encodings/cp850.py`` and ``encodings/cp858.py`` -> ``encodings/cp``; ``lib2to3/fixes/fix_dict.py`` ->
    ``lib2to3/fixes/fix``; ``importlib/_bootstrap_external.py`` -> ``importlib/bootstrap``. Coarse on purpose:
    generated or templated siblings share a prefix, and a family is never split across train and held-out.
    """
    path = Path(rel)
    m = re.match(r"[a-z]+", path.stem.lstrip("_").lower())
    return f"{path.parent.as_posix()}/{m.group(0) if m else path.stem.lower()}"


def is_codec_table(text: str) -> bool:
    """A generated codec table (``encodings/cp*.py`` style) or any file mostly made of hex literals."""
    if any(m in text for m in _CODEC_MARKERS):
        return True
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return bool(lines) and sum(bool(_HEX_LINE.search(ln)) for ln in lines) > 0.3 * len(lines)


def _shingles(text: str, k: int = 4) -> set[int]:
    """Hashes of every ``k`` consecutive non-blank, stripped lines (a file shorter than ``k`` lines: one shingle)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return set()
    grams = ["\n".join(lines[i : i + k]) for i in range(max(1, len(lines) - k + 1))]
    return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") for g in grams}


def shingle_containment(text: str, reference: set[int]) -> float:
    """Fraction of ``text``'s 4-line shingles that also occur in ``reference`` (0 for an empty file)."""
    sh = _shingles(text)
    return len(sh & reference) / len(sh) if sh else 0.0


@dataclass(frozen=True)
class CodeSplit:
    """Train and held-out code files, and every file kept out of the held-out side with the reason."""

    train: list[Path]
    heldout: list[Path]
    excluded: dict[str, str] = field(default_factory=dict)


def code_splits(root: str | None, heldout_fraction: float, max_overlap: float = 0.2) -> CodeSplit:
    """Family-level split of the code corpus, held-out side cleaned of codec tables and near-duplicates.

    A held-out file is dropped (from both sides) when it is a codec table, is empty, or when more than
    ``max_overlap`` of its 4-line shingles occur anywhere in the training split.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {heldout_fraction!r}")
    base = Path(root) if root is not None else data.stdlib_root()
    files = data.stdlib_python_files(root)
    rel = {f: (f.relative_to(base).as_posix() if f.is_relative_to(base) else str(f)) for f in files}
    train, held = [], []
    for f in files:
        if rel[f] == ENGLISH_MODULE:
            continue
        (held if _hash_frac(name_family(rel[f])) < heldout_fraction else train).append(f)
    reference: set[int] = set()
    for f in train:
        reference |= _shingles(f.read_text(encoding="utf-8", errors="replace"))
    kept, excluded = [], {}
    for f in held:
        text = f.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            excluded[rel[f]] = "empty"
        elif is_codec_table(text):
            excluded[rel[f]] = "codec table"
        elif (c := shingle_containment(text, reference)) > max_overlap:
            excluded[rel[f]] = f"{c:.0%} of its 4-line shingles occur in the training split"
        else:
            kept.append(f)
    if not train or not kept:
        raise ValueError(
            f"heldout_fraction={heldout_fraction} splits {len(files)} files into {len(train)} train / "
            f"{len(kept)} clean held-out; both must be non-empty"
        )
    return CodeSplit(train, kept, excluded)


def byte_encoder() -> tuple[Encode, int]:
    """A byte-level tokenizer for the tiny test models (vocab 256; NUL is EOS)."""
    return (lambda text: list(text.encode("utf-8"))), 0


def hf_encoder(tokenizer: Any) -> tuple[Encode, int]:
    return data.hf_encoder(tokenizer), tokenizer.eos_token_id
