"""Reward functions ``(prompts, completions, **example_fields) -> list[float | None]`` and their registry."""

from experiments.grpo.rewards.registry import REWARDS, RewardSpec, get_reward, score_all

__all__ = ["REWARDS", "RewardSpec", "get_reward", "score_all"]
