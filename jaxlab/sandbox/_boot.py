"""Bootstrap that runs inside the sandbox before any untrusted code (copied into its temp dir).

Limits are set here, not in a preexec_fn, so the parent never runs Python after
fork (unsafe in a multithreaded JAX process).  argv: program path, then an
optional ``grade`` flag: in grading mode a per-run marker is read from a pipe
before the program runs and printed only if the program returned normally, so
an early ``sys.exit(0)``/``os._exit(0)``/atexit exit never counts as a pass.
"""

import json
import os
import resource
import sys


def _main():
    mem, cpu, nproc, mfd = (int(x) for x in os.environ.pop("JAXLAB_SANDBOX_LIMITS").split(","))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    uid = int(os.environ.pop("JAXLAB_SANDBOX_UID", "-1"))
    if uid >= 0:  # root caller: become a fresh unprivileged uid (the kernel never limits uid 0's processes)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            os._exit(125)
    marker = None
    if mfd >= 0:
        marker = os.read(mfd, 128).decode()
        os.close(mfd)
    blocked = {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "urllib.Request",
    }
    if marker is not None:  # grading: no peeking at the harness's frames or memory
        blocked |= {
            "sys._getframe",
            "sys._current_frames",
            "gc.get_referrers",
            "gc.get_objects",
            "ctypes.dlopen",
            "ctypes.dlsym",
            "ctypes.string_at",
            "ctypes.cdata",
        }

    def guard(event, args):
        if event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "socket.__new__" and len(args) > 1 and args[1] in (2, 10):  # AF_INET, AF_INET6
            raise PermissionError("sandbox: network access is disabled")
        if event in ("socket.connect", "socket.bind", "socket.sendto") and len(args) > 1 and isinstance(args[1], tuple):
            raise PermissionError("sandbox: network access is disabled")
        if (
            marker is not None
            and event == "open"
            and isinstance(args[0], (str, bytes))
            and str(args[0]).rstrip("/").endswith(("/mem", "/environ", "/maps"))
        ):
            raise PermissionError("sandbox: process memory is not readable while grading")
        if (
            marker is not None
            and event == "object.__getattr__"
            and len(args) > 1
            and args[1] in ("f_back", "tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_locals", "f_globals")
        ):
            raise PermissionError("sandbox: frame introspection is not allowed while grading")

    ns = {"__name__": "__main__"}
    fds = os.environ.pop("JAXLAB_SANDBOX_RPC", "")
    if fds:
        r, w, cap = (int(x) for x in fds.split(","))
        rin, rout = os.fdopen(r, "r"), os.fdopen(w, "w")

        def rpc(method, **params):
            """Call the parent process; returns its JSON result or raises RuntimeError."""
            msg = json.dumps({"method": method, "params": params}) + "\n"
            if len(msg) > cap:
                raise RuntimeError(f"sandbox: rpc traffic over its cap ({cap} bytes a message)")
            try:
                rout.write(msg)
                rout.flush()
            except (BrokenPipeError, OSError) as exc:
                raise RuntimeError(f"sandbox: parent closed the rpc channel ({exc})") from None
            line = rin.readline()
            if not line:
                raise RuntimeError("sandbox: parent closed the rpc channel")
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply["result"]

        ns["rpc"] = rpc
    with open(sys.argv[1]) as f:
        src = f.read()
    code = compile(src, "<sandbox>", "exec")
    del src
    sys.addaudithook(guard)
    exec(code, ns)
    if marker is not None:
        sys.stdout.flush()
        os.write(1, f"\n{marker}\n".encode())


_main()
