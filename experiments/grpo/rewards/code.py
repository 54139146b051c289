"""Code rewards: run the completion's code against the example's tests in the sandbox.

The pass is decided by :func:`jaxlab.sandbox.run_tests`, whose per-run marker an
RL policy cannot print or fake: a completion that exits 0 before the tests ran
(``sys.exit(0)``, ``os._exit(0)``, an atexit hook) scores 0, the reward hack a
policy would otherwise find.  Each completion runs in its own bubblewrap
sandbox; completions are scored concurrently in a bounded thread pool (each
sandbox is a subprocess, so threads do not contend for the GIL).
"""

from __future__ import annotations

import ast
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from jaxlab.sandbox import SandboxResult, code_block, run_tests

TIMEOUT_S = 10.0
MEMORY_MB = 512
MAX_PARALLEL = 4


def split_cases(tests: str) -> tuple[str, list[str]]:
    """(setup, cases): each top-level ``assert`` is a case; every other statement (imports, helpers) is setup."""
    try:
        tree = ast.parse(tests)
    except SyntaxError as exc:
        raise ValueError(f"tests: not valid Python ({exc})") from None
    setup = [ast.get_source_segment(tests, n) for n in tree.body if not isinstance(n, ast.Assert)]
    cases = [ast.get_source_segment(tests, n) for n in tree.body if isinstance(n, ast.Assert)]
    return "\n".join(setup), cases


def _run(program: str, tests: str) -> tuple[bool, SandboxResult]:
    out = run_tests(program, tests, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB)
    return out.passed, out.result


def _all_pass(completion: str, tests: str | None) -> tuple[float | None, str]:
    if not tests:
        return None, "no_tests"
    passed, r = _run(code_block(completion), tests)
    return float(passed), "passed" if passed else r.status


def _fraction(completion: str, tests: str | None) -> tuple[float | None, str]:
    """Each case in its own sandbox run: a case passes only on this run's marker, so no case can vouch for another."""
    if not tests:
        return None, "no_tests"
    setup, cases = split_cases(tests)
    if not cases:
        return _all_pass(completion, tests)
    program = code_block(completion)
    runs = [_run(program, f"{setup}\n{case}") for case in cases]
    fails = Counter(r.status for ok, r in runs if not ok)
    return sum(ok for ok, _ in runs) / len(runs), "passed" if not fails else fails.most_common(1)[0][0]


def _score(name: str, one, completions: Sequence[str], tests: Sequence[str | None] | None):
    if tests is None:
        raise ValueError(f"{name}: the examples need a 'tests' field (Python asserts run after the code)")
    if len(tests) != len(completions):
        raise ValueError(f"{name}: got {len(tests)} tests for {len(completions)} completions")
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        scored = list(pool.map(one, completions, tests))
    counts = Counter(status for _, status in scored)
    info = {f"status_{k}": float(v) for k, v in sorted(counts.items())}  # timeouts, crashes, ... in the log
    return [v for v, _ in scored], info


def code_tests(
    prompts: Sequence[str], completions: Sequence[str], *, tests: Sequence[str | None] | None = None, **_: object
) -> tuple[list[float | None], dict[str, float]]:
    """1.0 when the completion's last code block passes all the example's ``tests`` in one run, else 0.0.

    ``tests``: Python test code (asserts) per completion; None for examples without
    tests.  Also returns counts of the sandbox statuses (``status_timeout``, ...).
    """
    return _score("code_tests", _all_pass, completions, tests)


def code_pass_fraction(
    prompts: Sequence[str], completions: Sequence[str], *, tests: Sequence[str | None] | None = None, **_: object
) -> tuple[list[float | None], dict[str, float]]:
    """The fraction of the example's top-level ``assert`` cases the completion passes (one sandbox run per case)."""
    return _score("code_pass_fraction", _fraction, completions, tests)
