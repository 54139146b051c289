"""Grading that cannot be gamed: only the harness's per-run marker, printed after the tests ran, counts."""

import logging

import pytest

import jaxlab.sandbox as sandbox
from jaxlab.sandbox import SandboxUnavailable, run_python, run_tests

PROGRAM = "def add(a, b):\n    return a - b   # wrong\n"
TESTS = "assert add(2, 3) == 5\n"

HACKS = {
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "atexit exit 0": "import atexit, os\natexit.register(lambda: os._exit(0))\nimport sys; sys.exit(1)\n",
    "print a fake marker": "import os\nprint('JAXLAB-TESTS-PASSED-' + '0' * 32)\nos._exit(0)\n",
    "steal from frames": """
import os, sys
found = []
try:
    f = sys._getframe(1)
    found += [v for v in f.f_locals.values() if isinstance(v, str) and v.startswith('JAXLAB')]
except Exception as e:
    pass
try:
    raise ValueError
except ValueError as e:
    try:
        f = e.__traceback__.tb_frame.f_back
        found += [v for v in f.f_locals.values() if isinstance(v, str) and v.startswith('JAXLAB')]
    except Exception:
        pass
try:
    import gc
    found += [o for o in gc.get_objects() if isinstance(o, str) and o.startswith('JAXLAB-TESTS-PASSED-')]
except Exception:
    pass
try:
    found += [l for l in open('/proc/self/environ').read().split('\\0') if 'JAXLAB' in l]
except Exception:
    pass
for m in found:
    print(m)
os._exit(0)
""",
}


@pytest.mark.parametrize("hack", list(HACKS), ids=list(HACKS))
def test_wrong_program_that_exits_early_with_zero_fails(hack):
    out = run_tests(PROGRAM + HACKS[hack], TESTS, allow_weak=True)
    assert not out.passed, out.result


def test_right_program_passes_and_wrong_one_fails():
    assert run_tests("def add(a, b):\n    return a + b\n", TESTS, allow_weak=True).passed
    out = run_tests(PROGRAM, TESTS, allow_weak=True)
    assert not out.passed and out.result.status == "error" and "AssertionError" in out.result.stderr


def test_output_after_the_marker_fails():
    # an atexit hook that prints pushes the marker off the last line
    out = run_tests(
        "import atexit\natexit.register(lambda: print('late'))\ndef add(a, b):\n    return a + b\n",
        TESTS,
        allow_weak=True,
    )
    assert not out.passed


def test_without_isolation_it_refuses_unless_weak_mode_is_chosen(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "isolation_error", lambda: "sandbox: user namespaces are disabled (test)")
    with pytest.raises(SandboxUnavailable, match="allow_weak=True"):
        run_python("print(1)")
    with caplog.at_level(logging.WARNING, logger="jaxlab.sandbox"):
        for _ in range(2):
            assert run_python("print(1)", allow_weak=True).stdout.strip() == "1"
    assert sum("WEAK MODE" in r.getMessage() for r in caplog.records) == 2  # logged on every call
