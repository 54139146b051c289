"""Neuron statistics on disk: tensorstore zarr arrays chunked per layer, written per batch, resumable.

Layout of one collection (one language's text) under ``path``::

    meta.json                  shapes: num_layers, ffn (F), attn (H * head_dim), sample_chunk
    cursor.json                {"batches", "samples", "tokens", "slot"}: the last *completed* batch
    sums/<key>      [2, L, W]  running sums (SUM_KEYS), two slots (double buffer)
    samples/<key>   [N, L, W]  per-sample PLND scores (SAMPLE_KEYS), chunk [sample_chunk, 1, W]
    samples/sample_tokens [N]

Why: a 7B-scale collection is hours of forward passes and its per-sample rows
(``N x 32 x 14336`` floats per score) do not fit in RAM, so rows go to disk after
every batch and one layer reads back alone (chunks never span layers). Resuming
must never see half a batch: a batch writes its rows past the cursor and its new
sums into the *other* slot, waits for every write, then replaces ``cursor.json``
atomically (write a temp file, ``fsync``, ``os.replace``). A kill at any point
leaves the old cursor naming consistent data; the next run skips the batches it
names and overwrites whatever the killed batch had left behind.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import tensorstore as ts
from flax import nnx

from jaxlab.transforms.neuron_stats import SAMPLE_KEYS, SUM_KEYS, accumulate, check_model, iter_batch_stats
from jaxlab.transforms.stats import as_split

_SUM_DTYPES = {"ffn_importance": ts.float64, "act_count": ts.int64, "qk_score": ts.float64, "vo_score": ts.float64}


def _spec(path: Path) -> dict[str, Any]:
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}


def _atomic_json(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(dict(value), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class NeuronStore:
    """One collection's arrays; open an existing one with ``NeuronStore(path)``, make one with :meth:`create`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "meta.json").exists():
            raise FileNotFoundError(f"neuron store: no meta.json under {self.path} (not a collection)")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self._sums = {k: ts.open(_spec(self.path / "sums" / k)).result() for k in SUM_KEYS}
        self._samples = {
            k: ts.open(_spec(self.path / "samples" / k)).result() for k in SAMPLE_KEYS + ("sample_tokens",)
        }

    @classmethod
    def create(
        cls, path: str | os.PathLike, num_layers: int, ffn: int, attn: int, sample_chunk: int = 64
    ) -> "NeuronStore":
        """Empty arrays for a model with ``num_layers`` layers, ``ffn`` neurons and ``attn`` dims per layer."""
        root = Path(path)
        if (root / "meta.json").exists():
            raise FileExistsError(f"neuron store: {root} already holds a collection; open it or pick a new path")
        for name, value in (("num_layers", num_layers), ("ffn", ffn), ("attn", attn), ("sample_chunk", sample_chunk)):
            if int(value) < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")
        widths = {
            "ffn_importance": ffn,
            "act_count": ffn,
            "qk_score": attn,
            "vo_score": attn,
            "sample_ffn": ffn,
            "sample_qk": attn,
            "sample_vo": attn,
        }
        futures = []
        for key in SUM_KEYS:
            futures.append(
                ts.open(
                    _spec(root / "sums" / key),
                    create=True,
                    dtype=_SUM_DTYPES[key],
                    shape=[2, num_layers, widths[key]],
                    chunk_layout=ts.ChunkLayout(chunk_shape=[1, 1, widths[key]]),
                )
            )
        for key in SAMPLE_KEYS:
            futures.append(
                ts.open(
                    _spec(root / "samples" / key),
                    create=True,
                    dtype=ts.float32,
                    shape=[0, num_layers, widths[key]],
                    chunk_layout=ts.ChunkLayout(chunk_shape=[sample_chunk, 1, widths[key]]),
                )
            )
        futures.append(
            ts.open(
                _spec(root / "samples" / "sample_tokens"),
                create=True,
                dtype=ts.int32,
                shape=[0],
                chunk_layout=ts.ChunkLayout(chunk_shape=[sample_chunk]),
            )
        )
        for f in futures:
            f.result()
        meta = {"num_layers": num_layers, "ffn": ffn, "attn": attn, "sample_chunk": sample_chunk, "format": 1}
        _atomic_json(root / "cursor.json", {"batches": 0, "samples": 0, "tokens": 0, "slot": 0})
        _atomic_json(root / "meta.json", meta)
        return cls(root)

    # ------------------------------------------------------------------ reading
    @property
    def cursor(self) -> dict[str, int]:
        """The last completed batch: ``batches`` done, ``samples`` rows valid, ``tokens`` counted, sums ``slot``."""
        return json.loads((self.path / "cursor.json").read_text())

    @property
    def num_samples(self) -> int:
        return int(self.cursor["samples"])

    def sums(self, layer: int | None = None) -> dict[str, np.ndarray]:
        """Running sums as of the cursor (``[L, W]``, or ``[W]`` for one ``layer``) and ``tokens``."""
        cur = self.cursor
        index = slice(None) if layer is None else self._layer(layer)
        out = {k: np.asarray(a[cur["slot"], index].read().result()) for k, a in self._sums.items()}
        out["tokens"] = np.int64(cur["tokens"])
        return out

    def samples(self, key: str, layer: int | None = None) -> np.ndarray:
        """Per-sample rows of ``key`` up to the cursor: ``[N, L, W]``, or ``[N, W]`` reading one ``layer`` only."""
        if key not in self._samples:
            raise ValueError(f"key: expected one of {list(self._samples)}, got {key!r}")
        n = self.num_samples
        arr = self._samples[key]
        if key == "sample_tokens":
            return np.asarray(arr[:n].read().result())
        index = slice(None) if layer is None else self._layer(layer)
        return np.asarray(arr[:n, index].read().result())

    def _layer(self, layer: int) -> int:
        if not 0 <= layer < self.meta["num_layers"]:
            raise ValueError(f"layer: expected 0 <= layer < {self.meta['num_layers']}, got {layer}")
        return layer

    # ------------------------------------------------------------------ writing
    def append(self, stats: Mapping[str, np.ndarray], total: Mapping[str, np.ndarray]) -> None:
        """Commit one batch: its per-sample rows, the new running ``total``, then the cursor (atomically)."""
        cur = self.cursor
        start, n = cur["samples"], len(stats["sample_tokens"])
        futures = []
        for key in SAMPLE_KEYS + ("sample_tokens",):
            arr = self._samples[key]
            if arr.shape[0] < start + n:
                chunk = self.meta["sample_chunk"]
                grow = max(start + n, 2 * arr.shape[0], chunk)
                arr = arr.resize(exclusive_max=[grow] + list(arr.shape[1:]), expand_only=True).result()
                self._samples[key] = arr
            if n:
                futures.append(arr[start : start + n].write(np.asarray(stats[key], arr.dtype.numpy_dtype)))
        slot = 1 - cur["slot"]
        for key in SUM_KEYS:
            arr = self._sums[key]
            futures.append(arr[slot].write(np.asarray(total[key], arr.dtype.numpy_dtype)))
        for f in futures:
            f.result()
        _atomic_json(
            self.path / "cursor.json",
            {"batches": cur["batches"] + 1, "samples": start + n, "tokens": int(total["tokens"]), "slot": slot},
        )


def collect_to_store(
    model_or_split: Any,
    batches: Iterable[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    sharding: Any = None,
    resume: bool = True,
    sample_chunk: int = 64,
) -> NeuronStore:
    """Stream ``batches`` through :func:`~jaxlab.transforms.neuron_stats.batch_neuron_stats` into ``path``.

    ``batches`` must be the same deterministic sequence on every call: a resumed
    run skips the ``cursor["batches"]`` batches already committed. ``resume=False``
    refuses an existing collection instead of continuing it (so nothing is
    silently mixed); a collection made for other shapes is refused either way.
    """
    graphdef, params, rest = as_split(model_or_split)
    cfg = nnx.merge(graphdef, params, rest).config
    ffn, attn = check_model(cfg)
    root = Path(path)
    if (root / "meta.json").exists():
        if not resume:
            raise FileExistsError(f"path: {root} already holds a collection (resume=False)")
        store = NeuronStore(root)
        want = {"num_layers": cfg.num_layers, "ffn": ffn, "attn": attn}
        got = {k: store.meta[k] for k in want}
        if got != want:
            raise ValueError(f"path: the collection at {root} was made for {got}, this model has {want}")
    else:
        store = NeuronStore.create(root, cfg.num_layers, ffn, attn, sample_chunk)
    done = store.cursor["batches"]
    total: dict[str, Any] = {}
    if done:
        total = {k: v for k, v in store.sums().items()}
    for stats in iter_batch_stats((graphdef, params, rest), itertools.islice(batches, done, None), sharding):
        accumulate(total, stats)
        store.append(stats, total)
    return store
