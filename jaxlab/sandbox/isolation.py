"""The bubblewrap command that isolates a sandboxed interpreter, and a probe that says whether it works here.

Isolation comes from a maintained tool, not from deny-lists: new user, PID,
mount, network, IPC, UTS (and cgroup) namespaces; a private ``/proc``; the
interpreter and system libraries read-only; the run's temp dir the only
writable path; no host sockets or files; ``--die-with-parent`` so the whole
tree dies with the caller.  When the caller is root the child runs under a
fresh unprivileged uid, because the kernel never applies ``RLIMIT_NPROC`` to
uid 0 and the process-count limit must hold.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_RO_SYSTEM = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
)
_UIDS = itertools.count()
_UID_BASE = 0x7A000000  # far above any real account; each run gets its own so process counts never mix


class SandboxUnavailable(RuntimeError):
    """bubblewrap isolation cannot be set up here and the caller did not opt into the weak mode."""


def sandbox_uid() -> int | None:
    """A fresh unprivileged uid for one run when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    return _UID_BASE + (os.getpid() % 4096) * 65536 + next(_UIDS) % 65536


_DROP = "import os; u = {uid}; u is None or (os.setgroups([]), os.setgid(u), os.setuid(u)); assert os.getuid() == (u or os.getuid())"


def _interpreter_paths() -> list[str]:
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    for p in sys.path:
        if p and os.path.isdir(p) and "site-packages" in p:
            paths.add(os.path.realpath(p))
    return sorted(p for p in paths if p not in ("/", "/usr"))


def bwrap_command(workdir: str, uid: int | None) -> list[str]:
    """argv prefix that runs a command inside the sandbox with ``workdir`` as its only writable path.

    ``uid`` (root callers): bwrap runs privileged and keeps only CAP_SETUID/SETGID
    so the bootstrap can drop to ``uid`` before any untrusted code; otherwise an
    unprivileged user namespace is created.
    """
    exe = shutil.which("bwrap")
    if exe is None:
        raise SandboxUnavailable("sandbox: bubblewrap (`bwrap`) is not installed; apt-get install bubblewrap")
    user = (
        ["--unshare-user", "--cap-drop", "ALL"]
        if uid is None
        else ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    )
    cmd = [
        exe,
        *user,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    for p in _RO_SYSTEM:
        cmd += ["--ro-bind-try", p, p]
    for p in _interpreter_paths():
        for parent in reversed(Path(p).parents[:-1]):  # traversable by the dropped uid even under a 0700 /root
            cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", p, p]
    cmd += ["--bind", workdir, workdir, "--chdir", workdir, "--"]
    return cmd


@functools.lru_cache(maxsize=1)
def isolation_error() -> str | None:
    """None when bubblewrap isolation works here, else why not (cached: probed once per process)."""
    uid = sandbox_uid()
    with tempfile.TemporaryDirectory(prefix="jaxlab-sandbox-probe-") as tmp:
        try:
            cmd = bwrap_command(tmp, uid) + [os.path.realpath(sys.executable), "-I", "-c", _DROP.format(uid=uid)]
        except SandboxUnavailable as exc:
            return str(exc)
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=30, env={})
        except (OSError, subprocess.SubprocessError) as exc:
            return f"sandbox: bubblewrap failed to start: {exc}"
    if r.returncode != 0:
        return (
            f"sandbox: bubblewrap cannot create its namespaces here (user namespaces disabled?): "
            f"{r.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return None
