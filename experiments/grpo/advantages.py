"""Group-relative advantages from several weighted reward functions.

Follows TRL's ``GRPOTrainer``: rewards of the F functions are combined per completion as a
NaN-aware weighted sum (``None`` = the function does not apply to that sample), then normalised
within each group of G completions of one prompt: ``(r - mean_group) / (std + eps)`` with the
Bessel-corrected std (``scale_rewards="group"``), the batch std (``"batch"``) or no scaling
(``"none"``, Dr. GRPO). Groups whose rewards are all equal carry no signal and can be dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SCALE_REWARDS = ("group", "batch", "none")


@dataclass(frozen=True)
class Advantages:
    """Per-completion advantages plus what the step logs about them."""

    advantages: np.ndarray  # [N] float32
    rewards: np.ndarray  # [N] weighted total reward
    zero_std_groups: np.ndarray  # [N // G] bool: every completion in the group got the same reward
    keep: np.ndarray  # [N] bool: False where the group was filtered out

    @property
    def frac_zero_std(self) -> float:
        return float(self.zero_std_groups.mean()) if self.zero_std_groups.size else 0.0


def weighted_rewards(per_func: Sequence[Sequence[float | None]], weights: Sequence[float] | None = None) -> np.ndarray:
    """``[F][N]`` rewards (None allowed) -> ``[N]`` totals: ``nansum_f(w_f * r_f)``.

    A completion for which every function returned None gets total 0 (TRL warns and does the same).
    """
    if len(per_func) == 0:
        raise ValueError("per_func: expected at least one reward function's rewards, got none")
    n = len(per_func[0])
    if any(len(r) != n for r in per_func):
        raise ValueError(
            f"per_func: every reward function must score all {n} completions, got lengths {[len(r) for r in per_func]}"
        )
    w = np.ones(len(per_func)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(per_func),):
        raise ValueError(f"weights: expected {len(per_func)} weights (one per reward function), got {w.shape[0]}")
    table = np.array([[np.nan if v is None else float(v) for v in r] for r in per_func], dtype=np.float64)
    return np.nansum(table * w[:, None], axis=0)


def group_advantages(
    rewards: np.ndarray,
    num_generations: int,
    *,
    scale_rewards: str = "group",
    eps: float = 1e-4,
    filter_zero_std: bool = False,
) -> Advantages:
    """Advantages for ``rewards[N]`` laid out as consecutive groups of ``num_generations``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards: expected one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if num_generations < 2:
        raise ValueError(f"num_generations: expected >= 2 (a group needs a baseline), got {num_generations}")
    if rewards.ndim != 1 or rewards.size % num_generations:
        raise ValueError(
            f"rewards: expected a flat array whose length is a multiple of num_generations="
            f"{num_generations}, got shape {rewards.shape}"
        )
    groups = rewards.reshape(-1, num_generations)
    mean = groups.mean(axis=1, keepdims=True)
    std = groups.std(axis=1, ddof=1, keepdims=True)
    centred = groups - mean
    if scale_rewards == "group":
        adv = centred / (std + eps)
    elif scale_rewards == "batch":
        adv = centred / (rewards.std(ddof=1) + eps)
    else:
        adv = centred
    zero_std = np.isclose(std[:, 0], 0.0)
    keep = np.repeat(~zero_std if filter_zero_std else np.ones_like(zero_std), num_generations)
    return Advantages(
        advantages=adv.reshape(-1).astype(np.float32), rewards=rewards, zero_std_groups=zero_std, keep=keep
    )
