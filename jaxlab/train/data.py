"""Grain input pipelines: packed code pretraining and chat SFT.

The offline code corpus
    Every Python install ships its standard library as ``.py`` source
    (``sysconfig.get_paths()["stdlib"]``; ~730 files, ~12 MB for CPython 3.11
    once the ``test``/``tests``/``idle_test`` folders and ``site-packages`` are
    left out). :func:`stdlib_python_files` lists it and :func:`split_files`
    assigns each file to train or held-out by a hash of its path relative to the
    stdlib root, so the split is the same on every machine and does not move
    when files are added or removed. Nothing is downloaded.

Pipelines
    :func:`pretrain_dataset` shuffles files with a seed, tokenizes them lazily
    (only what is consumed), appends EOS, concatenates and splits the stream
    into ``seq_len + 1`` windows (grain ``ConcatThenSplitIterDataset``),
    shuffles windows in a bounded window, and batches. :func:`chat_sft_dataset`
    renders JSONL conversations with the tokenizer's chat template and trains
    only on assistant tokens.

Batches are dicts of int32 ``[B, seq_len]`` arrays ``input_ids``, ``targets``
(``input_ids`` shifted by one) and ``loss_mask``. Every pipeline is a pure
function of its inputs and ``seed``; its iterator's ``get_state()`` is a small
JSON-able dict that :mod:`jaxlab.train.checkpoint` stores, and ``set_state()``
resumes mid-epoch at exactly the next batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import grain
import numpy as np
from grain.experimental import ConcatThenSplitIterDataset, WindowShuffleIterDataset

from jaxlab.config import require_positive

Encode = Callable[[str], Sequence[int]]
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_ROLES = ("system", "user", "assistant", "tool")
# Tokenize/read on one background thread: the machine's cores belong to XLA.
_READ = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


# --------------------------------------------------------------------------- corpus
def stdlib_root() -> Path:
    """The directory holding this interpreter's standard-library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_python_files(root: str | Path | None = None) -> list[Path]:
    """Sorted ``.py`` files under ``root`` (default: the stdlib), tests excluded."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {str(root)!r} is not a directory")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)  # prune, don't descend
        files.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    if not files:
        raise FileNotFoundError(f"no .py files found under {str(root)!r}")
    return sorted(files)


def split_files(
    files: Sequence[Path], heldout_fraction: float, root: str | Path | None = None
) -> tuple[list[Path], list[Path]]:
    """Deterministic ``(train, heldout)`` split by a hash of each relative path."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {heldout_fraction!r}")
    root = Path(root) if root is not None else stdlib_root()
    train, heldout = [], []
    for f in files:
        rel = Path(f).relative_to(root).as_posix() if Path(f).is_relative_to(root) else str(f)
        h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2.0**64
        (heldout if h < heldout_fraction else train).append(Path(f))
    if not train or not heldout:
        raise ValueError(
            f"heldout_fraction={heldout_fraction} splits {len(files)} files into "
            f"{len(train)} train / {len(heldout)} held-out; both must be non-empty"
        )
    return train, heldout


def hf_encoder(tokenizer: Any) -> Encode:
    """Plain ``text -> ids`` for a Hugging Face tokenizer, without BOS/EOS.

    Uses the Rust backend directly when there is one: whole source files are
    longer than the model's context and the Python wrapper warns on each.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda text: backend.encode(text, add_special_tokens=False).ids
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


# --------------------------------------------------------------------------- pretraining
class _ReadAndTokenize(grain.transforms.Map):
    def __init__(self, encode: Encode, eos_id: int):
        self._encode, self._eos_id = encode, eos_id

    def map(self, path: str) -> dict[str, np.ndarray]:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        ids = list(self._encode(text)) + [self._eos_id]
        return {"tokens": np.asarray(ids, dtype=np.int32)}


def _window_to_example(window: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tokens = window["tokens"]
    return {
        "input_ids": tokens[:-1],
        "targets": tokens[1:],
        "loss_mask": np.ones(tokens.shape[0] - 1, np.int32),
    }


def pretrain_dataset(
    files: Sequence[str | Path],
    encode: Encode,
    *,
    eos_id: int,
    seq_len: int,
    batch_size: int,
    seed: int,
    num_epochs: int | None = None,
    shuffle: bool = True,
    shuffle_window: int = 64,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """Packed next-token batches from text files; ``num_epochs=None`` repeats forever.

    With ``shuffle=False`` files are read in the given order (use it for a fixed
    held-out evaluation set). ``shard_index`` / ``shard_count`` keep only the
    files ``files[shard_index::shard_count]`` (one host's share, see
    :mod:`jaxlab.train.shards`).
    """
    require_positive(seq_len=seq_len, batch_size=batch_size, shard_count=shard_count)
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: expected 0 <= index < shard_count ({shard_count}), got {shard_index}")
    if len(files) < shard_count:
        raise ValueError(f"pretrain_dataset: {len(files)} files cannot fill {shard_count} shards")
    ds = grain.MapDataset.source([str(f) for f in files])[shard_index::shard_count]
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs).map(_ReadAndTokenize(encode, eos_id))
    it = ConcatThenSplitIterDataset(ds.to_iter_dataset(_READ), length_struct={"tokens": seq_len + 1})
    it = it.map(_window_to_example)
    if shuffle and shuffle_window > 1:
        it = WindowShuffleIterDataset(it, window_size=shuffle_window, seed=seed)
    return it.batch(batch_size, drop_remainder=True)


# --------------------------------------------------------------------------- chat SFT
def load_chat_jsonl(path: str | Path) -> list[list[dict[str, str]]]:
    """Conversations from JSONL rows ``{"messages": [{"role", "content"}, ...]}``.

    Every row is validated up front; errors name the file, line and field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chat data file {str(path)!r} does not exist")
    conversations = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: expected an object with a non-empty 'messages' list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                raise ValueError(
                    f"{where}: messages[{i}] must be {{'role': one of {list(_ROLES)}, 'content': str}}, got {m!r}"
                )
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{where}: no assistant message, so nothing to train on")
        conversations.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not conversations:
        raise ValueError(f"{path}: no conversations")
    return conversations


def encode_chat(messages: Sequence[dict[str, str]], tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and a same-length 0/1 mask that is 1 on assistant-written tokens.

    The template is rendered once for the whole conversation; for each assistant
    turn ``i`` its character span runs from the end of ``messages[:i]`` rendered
    *with* the generation prompt (so the ``<|im_start|>assistant`` header is not
    trained on) to the end of ``messages[:i+1]`` (so the end-of-turn token is).
    Tokens are assigned to spans by their character offsets, which works for any
    template whose renders of prefixes are string prefixes of the full render.
    """

    def render(msgs, gen):
        return tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head, upto = render(messages[:i], True), render(messages[: i + 1], False)
        if not (full.startswith(upto) and upto.startswith(head)):
            raise ValueError(
                f"chat template does not render messages[:{i}] + generation prompt as a prefix "
                f"of messages[:{i + 1}]; cannot locate the assistant tokens of turn {i}"
            )
        spans.append((len(head), len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], np.int32)
    starts = np.asarray([s for s, _ in enc["offset_mapping"]], np.int64)
    mask = np.zeros(len(ids), np.int32)
    for lo, hi in spans:
        mask |= ((starts >= lo) & (starts < hi)).astype(np.int32)
    return ids, mask


class _EncodeChat(grain.transforms.Map):
    """One conversation as next-token arrays: padded to ``seq_len`` or, with ``pad=False`` (packing), as long
    as it is."""

    def __init__(self, tokenizer: Any, seq_len: int, pad_id: int, truncate: bool, pad: bool = True):
        self._tok, self._seq_len, self._pad_id, self._truncate = tokenizer, seq_len, pad_id, truncate
        self._pad = pad

    def map(self, messages):
        ids, mask = encode_chat(messages, self._tok)
        n = self._seq_len + 1
        if len(ids) > n:
            if not self._truncate:
                raise ValueError(
                    f"conversation of {len(ids)} tokens exceeds seq_len + 1 = {n}; raise "
                    f"data.seq_len or set data.truncate=true (first message: {messages[0]['content'][:60]!r})"
                )
            ids, mask = ids[:n], mask[:n]
        pad = n - len(ids) if self._pad else 0
        ids = np.pad(ids, (0, pad), constant_values=self._pad_id)
        mask = np.pad(mask, (0, pad))
        return {"input_ids": ids[:-1], "targets": ids[1:], "loss_mask": mask[1:]}


def chat_sft_dataset(
    path: str | Path,
    tokenizer: Any,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    num_epochs: int | None = None,
    shuffle: bool = True,
    truncate: bool = False,
    packing: bool = False,
    packing_bins: int = 16,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """One right-padded conversation per row; loss only on assistant tokens.

    With ``packing`` several whole conversations share a row (first-fit over
    ``packing_bins`` open rows, :func:`jaxlab.train.packing.pack`), and the batch
    gains ``segment_ids`` and ``positions`` so they never attend to each other.
    ``shard_index`` / ``shard_count`` keep only conversations
    ``rows[shard_index::shard_count]`` (one host's share, see :mod:`jaxlab.train.shards`).
    """
    require_positive(seq_len=seq_len, batch_size=batch_size, shard_count=shard_count)
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: expected 0 <= index < shard_count ({shard_count}), got {shard_index}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("chat_sft_dataset: the tokenizer has neither pad_token_id nor eos_token_id")
    rows = load_chat_jsonl(path)
    if len(rows) < shard_count:
        raise ValueError(
            f"chat_sft_dataset: {len(rows)} conversations in {str(path)!r} cannot fill {shard_count} shards"
        )
    ds = grain.MapDataset.source(rows)[shard_index::shard_count]
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs).map(_EncodeChat(tokenizer, seq_len, pad_id, truncate, pad=not packing))
    if packing:
        from jaxlab.train.packing import pack

        rows = pack(ds.to_iter_dataset(_READ), seq_len, num_bins=packing_bins, seed=seed, shuffle=shuffle)
        return rows.batch(batch_size, drop_remainder=True)
    return ds.batch(batch_size, drop_remainder=True).to_iter_dataset(_READ)


# --------------------------------------------------------------------------- helpers
def set_iterator_state(iterator: grain.DatasetIterator, state: dict[str, Any]) -> None:
    """Restore a grain iterator from a state that went through JSON.

    JSON turns tuples into lists, and grain compares some state fields to tuples
    (``ConcatThenSplit``'s empty remainder ``(-1, -1)``): a list there silently
    resumes at the wrong element. Lists are converted back to tuples first.
    """

    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return tuple(tuples(v) for v in x)
        return x

    iterator.set_state(tuples(state))


def take_batches(dataset: grain.IterDataset, n: int) -> list[dict[str, np.ndarray]]:
    """The first ``n`` batches of ``dataset`` (fewer if it is shorter)."""
    out: list[dict[str, np.ndarray]] = []
    it: Iterator = iter(dataset)
    for batch in it:
        out.append(batch)
        if len(out) == n:
            break
    return out
