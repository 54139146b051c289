"""Adversarial code in the sandbox: the caller lives, nothing escapes, no process survives, the status is right.

Processes the attack leaves behind name themselves (``/proc/self/comm``) with a
per-test token so the test can look for survivors from the host side.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from jaxlab.sandbox import isolation_error, run_python

pytestmark = pytest.mark.skipif(isolation_error() is not None, reason=f"no bubblewrap here: {isolation_error()}")

SPAWN = """
import ctypes, os, time
def name(t):  # prctl(PR_SET_NAME): /proc/self/comm is not writable after the bootstrap drops privileges
    assert ctypes.CDLL(None).prctl(15, t.encode(), 0, 0, 0) == 0
"""


def _survivors(token: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == token:
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def _wait_gone(token: str, within_s: float = 3.0) -> list[int]:
    end = time.monotonic() + within_s
    while (left := _survivors(token)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


@pytest.fixture
def token() -> str:
    return "jlx" + secrets.token_hex(5)


def test_killing_its_parent_does_not_kill_the_caller(token):
    r = run_python(f"""
import os, signal
for pid in (os.getppid(), 1, {os.getpid()}, -1):
    try:
        os.kill(pid, signal.SIGKILL)
        print('sent', pid)
    except OSError as e:
        print('refused', pid, type(e).__name__)
print('still here', os.getppid())
""")
    # the sandbox's parent is the namespace's init; the caller's pid is not even visible inside the PID namespace
    assert r.ok and "still here" in r.stdout, r.stdout + r.stderr
    assert f"sent {os.getpid()}" not in r.stdout
    assert os.getpid() != int(r.stdout.split()[-1])


def test_ctypes_fork_children_die_with_a_normal_return(token):
    r = run_python(
        SPAWN
        + f"""
libc = ctypes.CDLL(None)
for _ in range(4):
    if libc.fork() == 0:
        name({token!r}); time.sleep(60); os._exit(0)
time.sleep(0.3)
print('forked')
"""
    )
    assert r.ok and "forked" in r.stdout
    assert _wait_gone(token) == []


def test_posixsubprocess_fork_exec_and_multiprocessing_are_contained(token):
    r = run_python(
        SPAWN
        + f"""
import _posixsubprocess, sys, multiprocessing as mp
code = "import ctypes, time; ctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0); time.sleep(60)"
args = [sys.executable, '-c', code]
er, ew = os.pipe()
pid = _posixsubprocess.fork_exec(args, [sys.executable.encode()], True, (ew,), None, None, -1, -1, -1, -1, -1, -1,
                                 er, ew, False, False, -1, None, None, None, -1, None, False)  # 3.11/3.12 argv
print('fork_exec pid', pid)
try:
    mp.get_context('spawn').Process(target=time.sleep, args=(60,)).start()
except Exception as e:
    print('mp', type(e).__name__)
time.sleep(0.5)
print('spawned')
""",
        timeout_s=20,
    )
    assert r.ok and "spawned" in r.stdout, r.stderr
    assert _wait_gone(token) == []


def test_children_die_with_a_timeout(token):
    r = run_python(
        SPAWN
        + f"""
if ctypes.CDLL(None).fork() == 0:
    name({token!r}); time.sleep(60)
name({token!r}); time.sleep(60)
""",
        timeout_s=1.5,
    )
    assert r.status == "timeout" and r.duration_s < 5
    assert _wait_gone(token) == []


def test_children_die_when_the_caller_is_killed(token, tmp_path):
    caller = tmp_path / "caller.py"
    child = (
        SPAWN
        + f"""
if ctypes.CDLL(None).fork() == 0:
    name({token!r}); time.sleep(60)
name({token!r}); time.sleep(60)
"""
    )
    caller.write_text(
        textwrap.dedent(f"""
        from jaxlab.sandbox import run_python
        run_python({child!r}, timeout_s=60)
    """)
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([sys.executable, str(caller)], env={**os.environ, "PYTHONPATH": root})
    try:
        end = time.monotonic() + 30
        while len(_survivors(token)) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert len(_survivors(token)) == 2
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        assert _wait_gone(token) == []
    finally:
        p.kill()


def test_fork_bomb_is_capped_and_cleaned_up(token):
    r = run_python(
        SPAWN
        + f"""
libc = ctypes.CDLL(None)
n = 0
for _ in range(200):
    pid = libc.fork()
    if pid == 0:
        name({token!r}); time.sleep(60); os._exit(0)
    if pid < 0:
        break
    n += 1
print('forks', n)
""",
        max_procs=16,
        timeout_s=20,
    )
    assert r.ok, r.stderr
    forks = int(r.stdout.split()[-1])
    assert 1 <= forks < 16
    assert _wait_gone(token) == []


def test_files_outside_the_temp_dir_are_invisible_and_read_only(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "train.py").write_text("original")
    target = str(checkout / "train.py")
    r = run_python(f"""
import os, sys
out = []
for attempt in (lambda: open({target!r}).read(), lambda: open({target!r}, 'w').write('pwned'),
                lambda: open(os.path.join(sys.prefix, 'pwned.txt'), 'w').write('x'),
                lambda: open('/etc/hostname').read(), lambda: os.listdir('/root/.ssh')):
    try:
        attempt(); out.append('ESCAPED')
    except OSError as e:
        out.append(type(e).__name__)
print(out)
""")
    assert r.ok and "ESCAPED" not in r.stdout, r.stdout + r.stderr
    assert (checkout / "train.py").read_text() == "original"
    assert not os.path.exists(os.path.join(sys.prefix, "pwned.txt"))


def test_callers_environment_is_unreadable(monkeypatch):
    secret = "sk-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    r = run_python(f"""
import os
seen = repr(dict(os.environ))
for pid in [os.getppid(), 1, {os.getpid()}]:
    try:
        seen += open(f'/proc/{{pid}}/environ').read()
    except OSError as e:
        seen += type(e).__name__
print(seen)
""")
    assert r.ok and secret not in r.stdout and "OPENAI_API_KEY" not in r.stdout


def test_host_unix_socket_and_loopback_listener_are_unreachable(tmp_path):
    path = str(tmp_path / "agent.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0jaxlab-test-" + secrets.token_hex(4))
    abstract.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    unix.setblocking(False)
    abstract.setblocking(False)
    tcp.setblocking(False)
    try:
        r = run_python(f"""
import ctypes, socket, struct
out = []
for fam, addr in ((socket.AF_UNIX, {path!r}), (socket.AF_UNIX, {abstract.getsockname()!r})):
    s = socket.socket(fam)
    try:
        s.connect(addr); out.append('ESCAPED')
    except OSError as e:
        out.append(type(e).__name__)
libc = ctypes.CDLL(None, use_errno=True)   # raw connect: the audit hook never sees it
fd = libc.socket(2, 1, 0)
sa = struct.pack('=HH4s8x', 2, socket.htons({port}), bytes([127, 0, 0, 1]))
rc = libc.connect(fd, sa, len(sa))
out.append('ESCAPED' if rc == 0 else f'errno {{ctypes.get_errno()}}')
print(out)
""")
        assert r.ok and "ESCAPED" not in r.stdout, r.stdout + r.stderr
        for s in (unix, abstract, tcp):
            with pytest.raises(BlockingIOError):
                s.accept()
    finally:
        for s in (unix, abstract, tcp):
            s.close()


def test_unread_large_stdin_does_not_block():
    r = run_python("import time; time.sleep(0.1); print('done')", stdin="x" * (64 << 20), timeout_s=10)
    assert r.ok and r.stdout.strip() == "done" and r.duration_s < 8
    r = run_python("import time; time.sleep(60)", stdin="x" * (64 << 20), timeout_s=1.5)
    assert r.status == "timeout" and r.duration_s < 5


def test_giant_output_is_capped():
    r = run_python(
        "import os\nfor _ in range(2000):\n    os.write(1, b'x' * (1 << 20))", max_output_bytes=100_000, timeout_s=30
    )
    assert r.ok and len(r.stdout) < 100_200 and "output truncated" in r.stdout


def test_rpc_flood_is_capped():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run_python(
        """
import os, stat
try:
    print(rpc('echo', blob='y' * (300 << 20)))
except RuntimeError as e:
    print(e)
# raw flood on every pipe we hold, past the bootstrap's own check: the parent's cap must hold too
fds = [int(f) for f in os.listdir('/proc/self/fd') if int(f) > 2]
chunk = b'y' * (1 << 20)
for fd in fds:
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            for _ in range(300):
                os.write(fd, chunk)
    except OSError as e:
        print('raw', fd, type(e).__name__)
print('done')
""",
        rpc=lambda m, p: len(p["blob"]),
        timeout_s=20,
        memory_mb=2048,
    )
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert r.ok and "rpc traffic over its cap" in r.stdout and "raw" in r.stdout, r.stdout + r.stderr
    assert r.stdout.strip().endswith("done") and r.duration_s < 15
    assert grown_mb < 100
