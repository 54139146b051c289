"""Multi-process (multi-host) runs: ``jax.distributed`` start-up and the little cross-host plumbing a runner needs.

One code path from one CPU to a pod: a run config's ``distributed`` section
(absent = one process) makes :func:`initialize` call
``jax.distributed.initialize`` *before anything touches a device* (JAX refuses
afterwards). With no fields set, JAX auto-detects the cluster (Cloud TPU,
SLURM, Open MPI, GKE); ``JAX_COORDINATOR_ADDRESS`` and ``JAX_LOCAL_DEVICE_IDS``
(read by JAX) and ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` (read here) fill
fields left unset, and explicit fields override all of that. On the CPU the
collectives run over gloo, so two local processes with 4 fake devices each form
one 8-device mesh, which is how the tests exercise this.

The helpers after it exist because every host runs the same program but only
one may write shared files: :func:`is_primary` guards logs, plots and
summaries; :func:`allgather_json` moves small JSON values (a per-host data
iterator state, a start-up error) between hosts over the same collectives.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """The ``distributed`` section: how this process joins the others (all None = auto-detect)."""

    coordinator_address: str | None = None
    """``host:port`` of process 0's coordination service, e.g. ``10.0.0.1:1234`` (or ``localhost:12355``)."""
    num_processes: int | None = None
    process_id: int | None = None
    """This process's index in ``[0, num_processes)``; differs per host, so it is not part of a run's identity."""
    local_device_ids: tuple[int, ...] | None = None
    """The local devices this process drives (several processes per GPU host); None: all of them."""
    initialization_timeout: int = 300
    """Seconds to wait for every process to join before failing."""

    def __post_init__(self) -> None:
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"distributed.num_processes: expected a positive integer, got {self.num_processes}")
        if self.process_id is not None:
            if self.process_id < 0 or (self.num_processes is not None and self.process_id >= self.num_processes):
                raise ValueError(
                    f"distributed.process_id: expected 0 <= id < num_processes "
                    f"({self.num_processes}), got {self.process_id}"
                )
        if self.local_device_ids is not None:
            ids = tuple(self.local_device_ids)
            if not ids or any(not isinstance(i, int) or i < 0 for i in ids):
                raise ValueError(
                    f"distributed.local_device_ids: expected a non-empty list of device indices >= 0, "
                    f"got {self.local_device_ids!r}"
                )
            object.__setattr__(self, "local_device_ids", ids)
        if self.initialization_timeout < 1:
            raise ValueError(f"distributed.initialization_timeout: expected >= 1 s, got {self.initialization_timeout}")


def initialize(cfg: DistributedConfig | None) -> None:
    """Join the process group described by ``cfg`` (``None``: stay a single process).

    Must run before any JAX call that touches a device; calling it again after
    a successful start is a no-op (a runner called twice in one interpreter).
    """
    if cfg is None or jax.distributed.is_initialized():
        return
    from jaxlab.config import ConfigError

    num_processes = _int_or_env(cfg.num_processes, "num_processes", "JAX_NUM_PROCESSES")
    process_id = _int_or_env(cfg.process_id, "process_id", "JAX_PROCESS_ID")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU client reads it
    try:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=cfg.local_device_ids,
            initialization_timeout=cfg.initialization_timeout,
        )
    except ValueError as exc:  # nothing detected and keys missing: say which keys would fix it
        raise ConfigError(
            f"distributed: {exc} No cluster (Cloud TPU, SLURM, Open MPI, GKE) was detected; set "
            f"distributed.coordinator_address, distributed.num_processes and "
            f"distributed.process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
            f"JAX_PROCESS_ID), or drop the distributed section for a one-process run"
        ) from None


def _int_or_env(value: int | None, key: str, env: str) -> int | None:
    """``value``, else the integer in environment variable ``env`` (JAX itself reads no such variable)."""
    if value is not None or not os.environ.get(env):
        return value
    try:
        return int(os.environ[env])
    except ValueError:
        from jaxlab.config import ConfigError

        raise ConfigError(f"distributed.{key}: the environment's {env}={os.environ[env]!r} is not an integer") from None


def is_primary() -> bool:
    """True on the process that writes shared outputs (logs, plots, summaries): process 0."""
    return jax.process_index() == 0


def to_host(x: Any) -> np.ndarray:
    """``x`` as a whole numpy array on this host, also when its shards are spread over other hosts' devices.

    ``np.asarray`` refuses a ``jax.Array`` that is neither fully addressable nor
    fully replicated; such an array is gathered (a collective: every process
    must call this for the same array).
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def allgather_json(value: Any) -> list[Any]:
    """Every process's JSON-able ``value``, in process order (``[value]`` with one process).

    Sent as padded uint8 arrays through ``multihost_utils.process_allgather``
    (the same collectives as training), so it needs no extra channel.
    """
    if jax.process_count() == 1:
        return [json.loads(json.dumps(value))]
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.asarray([raw.size], np.int32))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: raw.size] = raw
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, lengths)]


def raise_everywhere(error: BaseException | None) -> None:
    """Raise ``error`` (found on any process) on every process, as the same exception type and message.

    Why: when only the primary checks something (the output directory), the
    other hosts would otherwise wait at the next collective until a timeout.
    """
    found = allgather_json(None if error is None else [type(error).__name__, str(error)])
    first = next((f for f in found if f is not None), None)
    if first is None:
        return
    if error is not None:
        raise error
    from jaxlab.config import ConfigError

    kind = ConfigError if first[0] in ("ConfigError", "RunDirError") else RuntimeError
    raise kind(f"{first[1]} (reported by another process)")
