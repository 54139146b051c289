"""GRPO's code reward runs completions against tests in the sandbox and cannot be gamed by an early exit."""

import pytest

from experiments.grpo.rewards import RewardSpec, score_all

TESTS = "assert square(3) == 9\nassert square(-2) == 4\n"
RIGHT = "Here it is:\n```python\ndef square(x):\n    return x * x\n```"
WRONG = "```python\ndef square(x):\n    return x + x\n```"
HACK_EXIT = "```python\ndef square(x):\n    return 0\nimport os\nos._exit(0)\n```"
HACK_SYS = "```python\nimport sys\ndef square(x):\n    return 0\nsys.exit(0)\n```"
HANG = "```python\ndef square(x):\n    while True:\n        pass\nsquare(1)\n```"


def test_code_reward_scores_passes_failures_and_exit_hacks():
    completions = [RIGHT, WRONG, HACK_EXIT, HACK_SYS, RIGHT]
    tests = [TESTS] * 4 + [None]
    per_func, metrics = score_all([RewardSpec("code_tests")], [""] * 5, completions, {"tests": tests})
    assert per_func == [[1.0, 0.0, 0.0, 0.0, None]]
    assert metrics["rewards/code_tests/mean"] == pytest.approx(0.25)
    assert metrics["rewards/code_tests/status_passed"] == 1 and metrics["rewards/code_tests/status_error"] == 1
    assert metrics["rewards/code_tests/status_ok"] == 2  # exited 0 without the harness's marker: not a pass


def test_pass_fraction_runs_each_case_alone():
    half = "```python\ndef square(x):\n    return 9 if x == 3 else 0\n```"
    tests = "import math\nassert square(3) == 9\nassert square(-2) == math.pow(2, 2)\n"
    per_func, metrics = score_all(
        [RewardSpec("code_pass_fraction")], [""] * 3, [RIGHT, half, WRONG], {"tests": [tests] * 3}
    )
    assert per_func == [[1.0, 0.5, 0.0]]


def test_bad_generated_code_is_a_scored_failure_and_counted():
    bomb = "```python\nimport ctypes\nlibc = ctypes.CDLL(None)\nwhile libc.fork() >= 0:\n    pass\n```"
    flood = "```python\nimport os\nwhile True:\n    os.write(1, b'x' * 65536)\n```"
    net = "```python\nimport socket\nsocket.create_connection(('127.0.0.1', 22))\n```"
    per_func, metrics = score_all([RewardSpec("code_tests")], [""] * 3, [bomb, flood, net], {"tests": [TESTS] * 3})
    assert per_func == [[0.0, 0.0, 0.0]]
    assert sum(v for k, v in metrics.items() if "/status_" in k) == 3


def test_code_reward_timeout_is_zero(monkeypatch):
    from experiments.grpo.rewards import code

    monkeypatch.setattr(code, "TIMEOUT_S", 1.0)
    assert code.code_tests([""], [HANG], tests=[TESTS]) == ([0.0], {"status_timeout": 1.0})


def test_code_reward_needs_tests_field():
    with pytest.raises(ValueError, match="'tests' field"):
        score_all([RewardSpec("code_tests")], [""], [RIGHT], {})
