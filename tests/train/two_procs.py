"""Launch N local JAX processes that form one process group over gloo (the CPU stand-in for a pod).

Each process gets ``devices`` fake CPU devices, so 2 x 4 is an 8-device mesh
spread over two hosts. ``argv(i, port)`` builds process ``i``'s command line;
:func:`jaxlab_run` is the usual one (``python -m jaxlab.cli run`` with the
``distributed.*`` keys a user would pass).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(
    argv: Callable[[int, int], Sequence[str]], n: int = 2, devices: int = 4, timeout: float = 400, check: bool = True
) -> list[tuple[int, str]]:
    """Run ``n`` processes to the end; ``[(returncode, stdout+stderr)]`` in process order.

    ``check``: fail (showing the log's tail) when a process exits non-zero.
    A process still running at ``timeout`` is killed, and so are the others.
    """
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": str(ROOT),
    }
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, *argv(i, port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = [(p.returncode, log) for p, log in zip(procs, logs)]
    if check:
        for i, (rc, log) in enumerate(results):
            assert rc == 0, f"process {i} exited {rc}:\n{log[-4000:]}"
    return results


def jaxlab_run(config: str | Path, *overrides: str, n: int = 2) -> Callable[[int, int], list[str]]:
    """``argv`` for :func:`launch`: ``jaxlab run CONFIG`` with process ``i``'s ``distributed.*`` keys."""

    def argv(i: int, port: int) -> list[str]:
        return [
            "-m",
            "jaxlab.cli",
            "run",
            str(config),
            f"distributed.coordinator_address=localhost:{port}",
            f"distributed.num_processes={n}",
            f"distributed.process_id={i}",
            *overrides,
        ]

    return argv
