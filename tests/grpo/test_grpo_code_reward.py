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


def test_code_reward_timeout_is_zero(monkeypatch):
    from experiments.grpo.rewards import code
    monkeypatch.setattr(code, "TIMEOUT_S", 1.0)
    assert code.code_tests([""], [HANG], tests=[TESTS]) == [0.0]


def test_code_reward_needs_tests_field():
    with pytest.raises(ValueError, match="'tests' field"):
        score_all([RewardSpec("code_tests")], [""], [RIGHT], {})
