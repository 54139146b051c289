"""Run untrusted generated code in a subprocess: time, memory, no network, temp dir.

Generated code (HumanEval completions, LLM-written agent systems, tool calls)
must never take the caller down: a crash, hang, memory blow-up or network
attempt comes back as a :class:`SandboxResult` with a status, never as an
exception in the trainer.  Isolation layers, each cheap:

* a fresh ``python -I`` in a new session (killable as a group) whose cwd, HOME
  and TMPDIR are a throw-away temp dir;
* ``resource.setrlimit``: address space (memory), CPU seconds, file size,
  open files; a wall-clock timeout kills the whole process group;
* no network: ``unshare -n`` (empty network namespace) when the kernel allows
  it, and always an audit hook that refuses internet sockets and subprocesses.

``rpc=`` lets sandboxed code call back into the parent (``rpc(method, **kw)``)
over a dedicated pipe pair; the code-based MAS frameworks use it so generated
agent systems can query the model through the verified hook without ever
holding a client or a network socket.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

STATUSES = ("ok", "error", "timeout", "memory", "crashed")

_BOOTSTRAP = r'''
import json, os, resource, sys
# Limits are set here, not in a preexec_fn, so the parent never runs Python after fork
# (unsafe in a multithreaded JAX process).  Nothing untrusted has run yet.
_mem, _cpu = (int(x) for x in os.environ.pop("JAXLAB_SANDBOX_LIMITS").split(","))
resource.setrlimit(resource.RLIMIT_AS, (_mem, _mem))
resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024,) * 2)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_BLOCKED = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
            "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request"}
def _guard(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "socket.__new__" and len(args) > 1 and args[1] in (2, 10):  # AF_INET, AF_INET6
        raise PermissionError("sandbox: network access is disabled")
    if event in ("socket.connect", "socket.bind", "socket.sendto") and len(args) > 1 and isinstance(args[1], tuple):
        raise PermissionError("sandbox: network access is disabled")
_ns = {"__name__": "__main__"}
_fds = os.environ.pop("JAXLAB_SANDBOX_RPC", "")
if _fds:
    _r, _w = (int(x) for x in _fds.split(","))
    _rin, _rout = os.fdopen(_r, "r"), os.fdopen(_w, "w")
    def rpc(method, **params):
        """Call the parent process; returns its JSON result or raises RuntimeError."""
        _rout.write(json.dumps({"method": method, "params": params}) + "\n"); _rout.flush()
        line = _rin.readline()
        if not line:
            raise RuntimeError("sandbox: parent closed the rpc channel")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]
    _ns["rpc"] = rpc
sys.addaudithook(_guard)
with open(sys.argv[1]) as _f:
    _src = _f.read()
exec(compile(_src, "<sandbox>", "exec"), _ns)
'''


@dataclass(frozen=True)
class SandboxResult:
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@functools.lru_cache(maxsize=1)
def unshare_available() -> bool:
    """True when ``unshare -n`` works here (root or unprivileged user namespaces)."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _drain(stream, sink: list[bytes], cap: int) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        if size < cap:
            sink.append(chunk[: cap - size])
        size += len(chunk)
    if size > cap:
        sink.append(f"\n[sandbox: output truncated, {size - cap} more bytes]".encode())


def _serve_rpc(read_fd: int, write_fd: int, handler: Callable[[str, dict], Any]) -> None:
    with os.fdopen(read_fd, "r") as rin, os.fdopen(write_fd, "w") as rout:
        for line in rin:
            try:
                msg = json.loads(line)
                reply = {"result": handler(msg["method"], msg.get("params") or {})}
            except Exception as exc:  # the child sees the error; the parent keeps going
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                rout.write(json.dumps(reply) + "\n")
                rout.flush()
            except (BrokenPipeError, OSError):
                return


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024, stdin: str = "",
               network: bool = False, rpc: Callable[[str, dict], Any] | None = None,
               max_output_bytes: int = 1_000_000) -> SandboxResult:
    """Execute ``code`` as ``__main__`` in a sandboxed interpreter and classify the outcome.

    status: ``ok`` (exit 0), ``error`` (exception / non-zero exit), ``timeout``
    (wall clock or CPU limit), ``memory`` (MemoryError under the address-space
    limit), ``crashed`` (killed by another signal).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
    if memory_mb < 64:
        raise ValueError(f"memory_mb: expected at least 64 (the interpreter needs it), got {memory_mb!r}")
    with tempfile.TemporaryDirectory(prefix="jaxlab-sandbox-") as tmp:
        boot, prog = os.path.join(tmp, "_boot.py"), os.path.join(tmp, "main.py")
        with open(boot, "w") as f:
            f.write(_BOOTSTRAP)
        with open(prog, "w") as f:
            f.write(code)
        env = {"PATH": os.defpath, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1",
               "JAXLAB_SANDBOX_LIMITS": f"{memory_mb * 1024 * 1024},{int(timeout_s) + 1}"}
        cmd = [sys.executable, "-I", boot, prog]
        if not network and unshare_available():
            cmd = [shutil.which("unshare"), "-n"] + cmd
        pass_fds: tuple[int, ...] = ()
        parent_fds: tuple[int, int] | None = None
        if rpc is not None:
            c_read, p_write = os.pipe()
            p_read, c_write = os.pipe()
            env["JAXLAB_SANDBOX_RPC"] = f"{c_read},{c_write}"
            pass_fds, parent_fds = (c_read, c_write), (p_read, p_write)
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds)
        threads = []
        out: list[bytes] = []
        err: list[bytes] = []
        for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
            threads.append(threading.Thread(target=_drain, args=(stream, sink, max_output_bytes), daemon=True))
        if parent_fds is not None:
            for fd in pass_fds:
                os.close(fd)
            threads.append(threading.Thread(target=_serve_rpc, args=(*parent_fds, rpc), daemon=True))
        for t in threads:
            t.start()
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for t in threads:
            t.join(timeout=5)
        duration = time.monotonic() - start
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    rc = proc.returncode
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL) and duration >= timeout_s * 0.9:
        status = "timeout"
    elif rc == 0:
        status = "ok"
    elif "MemoryError" in stderr[-2000:]:
        status = "memory"
    elif rc is not None and rc < 0:
        status = "crashed"
    else:
        status = "error"
    return SandboxResult(status=status, returncode=rc, stdout=stdout, stderr=stderr, duration_s=duration)
