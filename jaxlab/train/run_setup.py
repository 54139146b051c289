"""The multi-host glue every runner shares: start-up, the mesh, this host's data shards, one writer.

Every host runs the same runner on the same config. The order matters and is
the same everywhere: :func:`start_run` joins the process group (from the
config's ``distributed`` section, before anything touches a device), lets
process 0 alone claim ``output_dir`` and write ``config.yaml``, and raises
process 0's error on every host (else the others would wait at the next
collective until a timeout). Then :func:`build_mesh` spans the *global*
devices, :func:`data_shards` says which data shards this host reads (the
trainer assembles the global batch with ``jax.make_array_from_process_local_data``,
see :mod:`jaxlab.train.shards`), :func:`primary_metrics` gives process 0 its
metrics/TensorBoard writer (``None`` elsewhere) and :func:`say` prints from
process 0 only. :func:`host_copy` brings a trained model's arrays, spread over
hosts, back to every host for the outputs that need the whole model.
:func:`refuse_multiprocess` is for runners that are not multi-process-correct
yet: the same clear error on every host instead of a crash or a hang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import yaml

from jaxlab.config import ConfigError, to_dict
from jaxlab.distributed import DistributedConfig, initialize, is_primary, raise_everywhere
from jaxlab.runs import claim_output_dir
from jaxlab.train.metrics import MetricsWriter


def start_run(cfg: Any, outputs: Sequence[str], *, resume_key: str | None = None, ignore: Sequence[str] = ()) -> Path:
    """Join the process group, claim ``cfg.output_dir`` on process 0 and write its ``config.yaml``.

    Returns the absolute output directory. Raises on every process the error
    process 0 met (e.g. :class:`jaxlab.runs.RunDirError`), as a ConfigError.
    """
    initialize(getattr(cfg, "distributed", None))  # before anything touches a device
    out = Path(cfg.output_dir).absolute()
    error = None
    if is_primary():
        try:
            claim_output_dir(cfg, outputs, resume_key=resume_key, ignore=ignore)
            (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        except Exception as exc:  # noqa: BLE001 - re-raised on every process just below
            error = exc
    raise_everywhere(error)
    return out


def refuse_multiprocess(cfg: Any, runner: str, why: str) -> None:
    """Join the process group, then raise the same ConfigError on every host if there are several.

    For runners whose training is not yet multi-process-correct: each host
    knows the process count after ``initialize``, so each raises by itself
    (no collective needed) before the output directory is touched.
    """
    dist: DistributedConfig | None = getattr(cfg, "distributed", None)
    initialize(dist)
    if jax.process_count() > 1:
        key = "distributed.num_processes" if dist is not None and dist.num_processes is not None else "distributed"
        raise ConfigError(
            f"{key}: the {runner} runner runs in one process only ({why}); this run has "
            f"{jax.process_count()} processes. Drop the distributed section (a mesh over one "
            f"host's devices still works) or set distributed.num_processes=1"
        )


def say(tag: str, text: str) -> None:
    """Print ``[tag] text`` from process 0 only (every host would print the same)."""
    if is_primary():
        print(f"[{tag}] {text}", flush=True)


def build_mesh(mesh_cfg: Any) -> Any:
    """The run's mesh over all processes' devices (``None`` without a ``mesh`` section); bad shapes name ``mesh``."""
    if mesh_cfg is None:
        return None
    from jaxlab.sharding import make_mesh

    try:
        return make_mesh(mesh_cfg)
    except ValueError as exc:
        raise ConfigError(f"{exc} ({jax.process_count()} process(es), {jax.device_count()} devices in all)") from None


def data_shards(shards: int | None, batch_size: int) -> tuple[list[int], int]:
    """``(this host's shard indices, total shards)`` for ``data.shards`` (``None``: one per process).

    Each shard yields ``batch_size / total`` rows per step, so the global batch
    is the same under any process count that divides ``total``.
    """
    from jaxlab.train import shards as shard_lib

    try:
        mine, total = shard_lib.local_shards(shards)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if batch_size % total:
        raise ConfigError(
            f"data.batch_size={batch_size} is not divisible by the {total} data shards "
            f"(data.shards, default: one per process)"
        )
    return mine, total


def primary_metrics(out: Path, resume_step: int | None) -> MetricsWriter | None:
    """The metrics JSONL + TensorBoard writer on process 0; ``None`` on the others (the trainer then logs nothing)."""
    return MetricsWriter(out, resume_step=resume_step) if is_primary() else None


def host_copy(tree: Any) -> Any:
    """``tree`` with every array whole on this host (a collective with several processes; identity with one).

    Why: after multi-process training the parameters are split over hosts,
    so sampling answers or writing ``hf_model/`` from process 0 needs them
    gathered. The copy is host memory on every process (for a model too big
    for that, export from the checkpoint with ``jaxlab export``).
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def host_copy_result(result: Any) -> Any:
    """A :class:`jaxlab.train.trainer.FitResult` whose params, rest (and LoRA adapters) are whole on this host.

    Every process must call it (a collective with several processes); the
    optimizer state is left where it is (only the checkpoint needs it).
    """
    if jax.process_count() == 1:
        return result
    import dataclasses

    changes = {"state": result.state._replace(params=host_copy(result.state.params)), "rest": host_copy(result.rest)}
    if getattr(result, "adapters", None) is not None:
        changes["adapters"] = host_copy(result.adapters)
    return dataclasses.replace(result, **changes)
