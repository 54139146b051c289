"""Data shards per process: each host reads only its share of the corpus.

A pipeline is cut into ``shards`` independent streams (grain slices of the
file list, ``files[i::shards]``), each yielding ``batch_size / shards`` rows per
step; the global batch is the concatenation of all streams' rows in shard
order. Process ``p`` of ``P`` owns shards ``[p*S/P, (p+1)*S/P)`` and reads
only those, and the trainer assembles the global batch on the mesh
(``jax.make_array_from_process_local_data``). Because the global batch depends
on ``shards`` and not on ``P``, 1 process x 8 devices and 2 processes x 4 devices
train on the same batches, and a checkpoint (whose data state is keyed by shard)
resumes under another process count.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import grain
import jax
import numpy as np

from jaxlab.train.data import set_iterator_state


def local_shards(shards: int | None) -> tuple[list[int], int]:
    """``(this process's shard indices, total shards)``; ``None`` means one shard per process."""
    count, index = jax.process_count(), jax.process_index()
    total = count if shards is None else shards
    if total < 1 or total % count:
        raise ValueError(f"data.shards: expected a positive multiple of the process count ({count}), got {total}")
    per = total // count
    return list(range(index * per, (index + 1) * per)), total


class ConcatShards:
    """Iterator over several shard datasets whose batches are concatenated row-wise.

    ``get_state`` / ``set_state`` hold one grain iterator state per shard,
    ``{"shards": {"<index>": state}}``, so the states of all processes merge
    into one (see :func:`global_data_state`) and split again by shard.
    """

    def __init__(self, datasets: Mapping[int, grain.IterDataset]):
        if not datasets:
            raise ValueError("ConcatShards: no shards")
        self._iters = {int(i): iter(ds) for i, ds in sorted(datasets.items())}

    def __iter__(self) -> "ConcatShards":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(it) for it in self._iters.values()]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    def get_state(self) -> dict[str, Any]:
        return {"shards": {str(i): it.get_state() for i, it in self._iters.items()}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        saved = state.get("shards") if isinstance(state, Mapping) else None
        if not isinstance(saved, Mapping):
            raise ValueError(
                f"data state: expected {{'shards': {{index: state}}}}, got keys "
                f"{sorted(state) if isinstance(state, Mapping) else type(state).__name__}"
            )
        missing = [i for i in self._iters if str(i) not in saved]
        if missing:
            raise ValueError(
                f"data state: the checkpoint holds shards {sorted(saved, key=int)}, this process "
                f"reads {list(self._iters)}; data.shards must match the run that saved it"
            )
        for i, it in self._iters.items():
            set_iterator_state(it, saved[str(i)])


def sharded(make: Callable[[int, int], grain.IterDataset], shards: int | None) -> ConcatShards:
    """This process's shards of ``make(shard_index, shard_count)``, concatenated."""
    mine, total = local_shards(shards)
    return ConcatShards({i: make(i, total) for i in mine})


def global_data_state(local: Any) -> Any:
    """One data state for the checkpoint from every process's local one (a collective when multi-process)."""
    if jax.process_count() == 1:
        return local
    from jaxlab.distributed import allgather_json

    states = allgather_json(local)
    if all(isinstance(s, dict) and set(s) == {"shards"} for s in states):
        return {"shards": {k: v for s in states for k, v in s["shards"].items()}}
    return {"per_process": states}


def local_data_state(state: Any) -> Any:
    """This process's part of a checkpointed data state (shard-keyed states pass through whole)."""
    if isinstance(state, dict) and "per_process" in state:
        saved = state["per_process"]
        if len(saved) != jax.process_count():
            raise ValueError(
                f"data state: saved by {len(saved)} processes, resuming with {jax.process_count()}; "
                f"use a shard-keyed iterator (jaxlab.train.shards) to change the process count"
            )
        return saved[jax.process_index()]
    return state
