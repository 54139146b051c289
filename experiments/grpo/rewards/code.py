"""Code rewards: run the completion's code against the example's tests in the sandbox.

The pass is decided by :func:`jaxlab.sandbox.run_tests`, whose per-run marker an
RL policy cannot print or fake: a completion that exits 0 before the tests ran
(``sys.exit(0)``, ``os._exit(0)``, an atexit hook) scores 0, the reward hack a
policy would otherwise find.  Each completion runs in its own bubblewrap
sandbox; completions are scored concurrently in a bounded thread pool (each
sandbox is a subprocess, so threads do not contend for the GIL).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from jaxlab.sandbox import code_block, run_tests

TIMEOUT_S = 10.0
MEMORY_MB = 512
MAX_PARALLEL = 4


def _one(completion: str, tests: str | None) -> float | None:
    if not tests:
        return None
    return 1.0 if run_tests(code_block(completion), tests, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB).passed else 0.0


def code_tests(prompts: Sequence[str], completions: Sequence[str], *, tests: Sequence[str | None] | None = None,
               **_: object) -> list[float | None]:
    """1.0 when the completion's last code block passes the example's ``tests`` (asserts), else 0.0.

    ``tests``: one string of Python test code per completion (the runner repeats each
    example's field over its group); None for examples without tests.
    """
    if tests is None:
        raise ValueError("code_tests: the examples need a 'tests' field (Python asserts run after the code)")
    if len(tests) != len(completions):
        raise ValueError(f"code_tests: got {len(tests)} tests for {len(completions)} completions")
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        return list(pool.map(_one, completions, tests))
