"""Run untrusted generated code in an isolated interpreter: time, memory, processes, no network, temp dir.

Generated code (HumanEval completions, LLM-written agent systems, tool calls,
GRPO code rewards) must never take the caller down or reach outside: a crash,
hang, memory blow-up, fork bomb, network attempt or escape attempt comes back as
a :class:`SandboxResult` with a status, never as an exception in the trainer.

Layers:

* bubblewrap (:mod:`jaxlab.sandbox.isolation`): user/PID/mount/net/IPC
  namespaces, private ``/proc``, read-only interpreter, the temp dir the only
  writable path, cleared environment, ``--die-with-parent``; killing it kills
  the whole process tree.  Without it ``run_python`` refuses
  (:class:`SandboxUnavailable`) unless called with ``allow_weak=True``, which
  is logged on every call;
* rlimits set by the bootstrap: address space, CPU seconds, file size, at most
  ``max_procs`` processes;
* an audit hook that refuses internet sockets and subprocesses (second layer);
* bounded I/O: stdin written from a thread, stdout/stderr and rpc traffic capped,
  every wait bounded by the deadline.

``files=`` puts input files into the run's temp dir (e.g. a table the code
reads) and ``collect=`` reads named files back after the run, as regular files
only (a symlink planted by the code is refused, never followed) and each capped
in size, before the temp dir is deleted (e.g. a rendered chart).

``rpc=`` lets sandboxed code call back into the parent (``rpc(method, **kw)``)
over a dedicated pipe pair; the code-based MAS frameworks use it so generated
agent systems can query the model without ever holding a client or a socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from jaxlab.sandbox.files import MAX_COLLECT_BYTES, collect_files, write_files
from jaxlab.sandbox.io import MAX_RPC_MESSAGE, drain, serve_rpc, write_stdin
from jaxlab.sandbox.isolation import SandboxUnavailable, bwrap_command, isolation_error, sandbox_uid

__all__ = [
    "STATUSES",
    "SandboxResult",
    "SandboxUnavailable",
    "TestOutcome",
    "code_block",
    "isolation_error",
    "run_python",
    "run_tests",
]

STATUSES = ("ok", "error", "timeout", "memory", "crashed")
_BOOT = (Path(__file__).parent / "_boot.py").read_text()
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxResult:
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    files: dict[str, bytes] = field(default_factory=dict)
    """The ``collect=`` files the run left in its temp dir (absent names are left out)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _check_args(timeout_s: float, memory_mb: int, max_procs: int, max_output_bytes: int) -> None:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
    if memory_mb < 64:
        raise ValueError(f"memory_mb: expected at least 64 (the interpreter needs it), got {memory_mb!r}")
    if not 1 <= max_procs <= 32:
        raise ValueError(f"max_procs: expected 1..32 processes, got {max_procs!r}")
    if max_output_bytes < 1:
        raise ValueError(f"max_output_bytes: expected a positive byte count, got {max_output_bytes!r}")


def _isolation_prefix(tmp: str, uid: int | None, allow_weak: bool) -> list[str]:
    err = isolation_error()
    if err is None:
        return bwrap_command(tmp, uid)
    if not allow_weak:
        raise SandboxUnavailable(
            f"{err}; refusing to run untrusted code without isolation "
            "(pass allow_weak=True to accept the weaker audit-hook-only sandbox)"
        )
    _log.warning(
        "sandbox: WEAK MODE (allow_weak=True): no bubblewrap isolation, only rlimits and an audit hook; "
        "the code can read the filesystem and signal other processes: %s",
        err,
    )
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10).returncode == 0:
        return [unshare, "-n"]
    return []


def _classify(rc: int | None, timed_out: bool, duration: float, timeout_s: float, stderr: str) -> str:
    # bwrap reports a child killed by signal N as exit status 128 + N
    sig = -rc if rc is not None and rc < 0 else rc - 128 if rc is not None and rc > 128 else None
    if timed_out or sig in (signal.SIGXCPU, signal.SIGKILL) and duration >= timeout_s * 0.9:
        return "timeout"
    if rc == 0:
        return "ok"
    if "MemoryError" in stderr[-2000:]:
        return "memory"
    if sig is not None:
        return "crashed"
    return "error"


def run_python(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    stdin: str = "",
    network: bool = False,
    rpc: Callable[[str, dict], Any] | None = None,
    max_output_bytes: int = 1_000_000,
    max_procs: int = 16,
    allow_weak: bool = False,
    files: Mapping[str, bytes | str] | None = None,
    collect: Sequence[str] = (),
    max_collect_bytes: int = MAX_COLLECT_BYTES,
    _marker: str | None = None,
) -> SandboxResult:
    """Execute ``code`` as ``__main__`` in an isolated interpreter and classify the outcome.

    status: ``ok`` (exit 0), ``error`` (exception / non-zero exit), ``timeout``
    (wall clock or CPU limit), ``memory`` (MemoryError under the address-space
    limit), ``crashed`` (killed by another signal).  ``network=True`` is refused:
    sandboxed code never gets a network.  ``files``: relative path -> content
    written into the temp dir first; ``collect``: relative paths read back into
    :attr:`SandboxResult.files` (regular files of at most ``max_collect_bytes``).
    """
    _check_args(timeout_s, memory_mb, max_procs, max_output_bytes)
    if max_collect_bytes < 1:
        raise ValueError(f"max_collect_bytes: expected a positive byte count, got {max_collect_bytes!r}")
    if network:
        raise ValueError("network: sandboxed code never gets network access; use rpc= to call the parent")
    deadline = time.monotonic() + timeout_s
    uid = sandbox_uid()
    with tempfile.TemporaryDirectory(prefix="jaxlab-sandbox-") as tmp:
        prefix = _isolation_prefix(tmp, uid, allow_weak)
        boot, prog = os.path.join(tmp, "_boot.py"), os.path.join(tmp, "main.py")
        Path(boot).write_text(_BOOT)
        Path(prog).write_text(code)
        written = write_files(tmp, files or {})
        if uid is not None and prefix and prefix[0].endswith("bwrap"):
            for p in (tmp, boot, prog, *written):
                os.chown(p, uid, uid)
            os.chmod(tmp, 0o711)  # bwrap runs as root without CAP_DAC_OVERRIDE and must reach the bootstrap
        else:
            uid = None
        keep: list[int] = []  # child ends of pipes: closed here after the spawn
        parent_ends: list[int] = []
        mfd = -1
        if _marker is not None:
            mfd, mw = os.pipe()
            os.write(mw, _marker.encode())
            os.close(mw)
            keep.append(mfd)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "JAXLAB_SANDBOX_LIMITS": f"{memory_mb * 1024 * 1024},{int(timeout_s) + 1},{max_procs},{mfd}",
        }
        if uid is not None:
            env["JAXLAB_SANDBOX_UID"] = str(uid)
        if rpc is not None:
            c_read, p_write = os.pipe()
            p_read, c_write = os.pipe()
            env["JAXLAB_SANDBOX_RPC"] = f"{c_read},{c_write},{MAX_RPC_MESSAGE}"
            keep += [c_read, c_write]
            parent_ends = [p_read, p_write]
        cmd = prefix + [os.path.realpath(sys.executable), "-I", boot, prog]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=tmp,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=tuple(keep),
            )
        finally:
            for fd in keep:
                os.close(fd)
        out: list[bytes] = []
        err: list[bytes] = []
        threads = [
            threading.Thread(target=drain, args=(proc.stdout, out, max_output_bytes), daemon=True),
            threading.Thread(target=drain, args=(proc.stderr, err, max_output_bytes), daemon=True),
            threading.Thread(target=write_stdin, args=(proc.stdin, stdin.encode()), daemon=True),
        ]
        if rpc is not None:
            threads.append(threading.Thread(target=serve_rpc, args=(*parent_ends, rpc), daemon=True))
        for t in threads:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # the namespace's init dies with bwrap, and the kernel kills everything left inside
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for t in threads:
            t.join(timeout=2.0)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        duration = time.monotonic() - start
        got = collect_files(tmp, collect, max_collect_bytes)
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    rc = proc.returncode
    status = _classify(rc, timed_out, duration, timeout_s, stderr)
    return SandboxResult(status=status, returncode=rc, stdout=stdout, stderr=stderr, duration_s=duration, files=got)


from jaxlab.sandbox.grading import TestOutcome, code_block, run_tests  # noqa: E402  (uses run_python)
