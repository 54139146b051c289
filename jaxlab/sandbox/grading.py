"""Grading generated code by running tests in the sandbox, in a way the code cannot game.

A pass is the harness's word, not the program's: a fresh random marker is
handed to the bootstrap over a pipe and printed by it only after the tests
returned normally, as the last line of stdout.  Exit codes alone never count,
so a wrong program that calls ``sys.exit(0)``, ``os._exit(0)`` or exits 0 from
an atexit hook fails, and so does one that prints after the tests ran.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from jaxlab.sandbox import SandboxResult, run_python

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class TestOutcome:
    passed: bool
    result: SandboxResult


def code_block(text: str) -> str:
    """The last fenced code block of a model reply, else the whole reply."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def run_tests(
    program: str, tests: str, *, timeout_s: float = 10.0, memory_mb: int = 512, allow_weak: bool = False
) -> TestOutcome:
    """Run ``program`` then ``tests`` in the sandbox; pass only if the harness printed this run's marker."""
    marker = f"JAXLAB-TESTS-PASSED-{secrets.token_hex(16)}"
    r = run_python(
        f"{program}\n\n{tests}\n", timeout_s=timeout_s, memory_mb=memory_mb, allow_weak=allow_weak, _marker=marker
    )
    lines = r.stdout.rstrip("\n").splitlines()
    return TestOutcome(passed=r.ok and bool(lines) and lines[-1] == marker, result=r)
