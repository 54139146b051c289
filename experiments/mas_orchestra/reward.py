"""The orchestration reward for the later GRPO stage (MAS-Orchestra: 0.1 execution + 0.9 answer)."""

from __future__ import annotations


def orchestration_reward(success: bool, correct: bool, exec_weight: float = 0.1, answer_weight: float = 0.9) -> float:
    """``exec_weight * success + answer_weight * correct``; a wrong answer from a broken system earns 0."""
    if exec_weight < 0 or answer_weight < 0:
        raise ValueError(f"weights must be >= 0, got exec_weight={exec_weight}, answer_weight={answer_weight}")
    if correct and not success:
        raise ValueError("correct=True with success=False: a system that failed to execute has no answer")
    return exec_weight * float(success) + answer_weight * float(correct)
