"""Generated code runs in a subprocess; every failure mode is a status, never an exception."""

import pytest

from jaxlab.sandbox import run_python


def test_ok_stdout_and_stdin():
    r = run_python("import sys; print(sys.stdin.read().upper())", stdin="abc")
    assert r.ok and r.stdout.strip() == "ABC" and r.returncode == 0


def test_exception_is_an_error_status_with_traceback():
    r = run_python("raise ValueError('boom')")
    assert r.status == "error" and "ValueError: boom" in r.stderr


def test_hang_is_a_timeout():
    r = run_python("while True:\n    pass", timeout_s=1.0)
    assert r.status == "timeout" and r.duration_s < 10


def test_memory_limit():
    r = run_python("x = bytearray(1024 * 1024 * 1024)", memory_mb=256)
    assert r.status == "memory"


def test_no_network_and_no_subprocess():
    r = run_python("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))")
    assert r.status == "error" and "network access is disabled" in r.stderr
    r = run_python("import subprocess; subprocess.run(['echo', 'hi'])")
    assert r.status == "error" and "not allowed" in r.stderr


def test_runs_in_a_temp_dir_that_is_removed():
    r = run_python("import os; open('f.txt', 'w').write('x'); print(os.getcwd())")
    import os

    assert r.ok and "jaxlab-sandbox-" in r.stdout and not os.path.exists(r.stdout.strip())


def test_crash_by_signal_is_scored_not_raised():
    assert run_python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)").status == "crashed"


def test_rpc_calls_back_into_the_parent_and_errors_propagate():
    seen = []

    def handler(method, params):
        seen.append(method)
        if method == "fail":
            raise KeyError("nope")
        return params["a"] * 2

    r = run_python(
        "print(rpc('double', a=21))\ntry:\n    rpc('fail')\nexcept RuntimeError as e:\n    print(e)", rpc=handler
    )
    assert r.ok and r.stdout.splitlines() == ["42", "KeyError: 'nope'"] and seen == ["double", "fail"]


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        run_python("pass", timeout_s=0)
