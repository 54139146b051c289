"""Packed sequences: several short examples per row, kept apart by segment ids.

Padding every conversation to ``seq_len`` wastes most of a batch on short
chats. :func:`pack` puts whole examples into rows with grain's first-fit packer
(``grain.experimental.FirstFitPackIterDataset``: ``num_bins`` open rows, each
example goes into the first row with room, all rows are emitted when one does
not fit) and adds, per row, ``segment_ids`` (1, 2, ... per example, 0 = padding)
and ``positions`` (restarting at 0 in each example). ``DecoderLM`` reads both:
examples never attend to each other and see the positions they would alone,
so a packed row computes the same logits and losses as its examples one by one.
Examples are never split; the concat-and-split pretraining windows of
:func:`jaxlab.train.data.pretrain_dataset` stay as they are.
"""

from __future__ import annotations

import grain
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from jaxlab.config import require_positive

PACKED_KEYS = ("input_ids", "targets", "loss_mask")


class _Rename(grain.transforms.Map):
    """grain names the per-feature ids ``<key>_segment_ids`` / ``<key>_positions``; keep one pair."""

    def map(self, row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: row[k].astype(np.int32) for k in PACKED_KEYS}
        out["segment_ids"] = row["input_ids_segment_ids"].astype(np.int32)
        out["positions"] = row["input_ids_positions"].astype(np.int32)
        return out


class _CheckLength(grain.transforms.Map):
    def __init__(self, seq_len: int):
        self._seq_len = seq_len

    def map(self, example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(example["input_ids"])
        if n > self._seq_len or any(len(example[k]) != n for k in PACKED_KEYS):
            raise ValueError(
                f"pack: an example has {n} tokens ({ {k: len(example[k]) for k in PACKED_KEYS} }); "
                f"packing needs equal-length input_ids/targets/loss_mask of at most seq_len={self._seq_len}"
            )
        return example


def pack(
    examples: grain.IterDataset, seq_len: int, *, num_bins: int = 16, seed: int = 0, shuffle: bool = True
) -> grain.IterDataset:
    """Rows of ``seq_len`` from variable-length ``{input_ids, targets, loss_mask}`` examples.

    Each output row also has ``segment_ids`` and ``positions`` (int32 ``[seq_len]``);
    padding has ``loss_mask`` 0 and segment 0. More ``num_bins`` means less padding
    and more reordering; ``shuffle`` shuffles the emitted rows of each round. The
    iterator's state checkpoints and resumes like any grain iterator.
    """
    require_positive(seq_len=seq_len, num_bins=num_bins)
    checked = examples.map(_CheckLength(seq_len))
    packed = FirstFitPackIterDataset(
        checked,
        length_struct={k: seq_len for k in PACKED_KEYS},
        num_packing_bins=num_bins,
        seed=seed,
        shuffle_bins=shuffle,
    )
    return packed.map(_Rename())
