"""PTL's RL tune: GRPO as the tune half of prune-tune (``tune.method: rl``).

``tune.rl_hook: experiments.grpo.ptl_tuner:factory`` makes every PTL stage run
GRPO on the stage's masked model, on the seeded arithmetic problems of
:mod:`experiments.grpo.tasks` (the training stream continues across stages, as
the CPT tuner's data does). The stage's prune masks become the learner's
gradient masks, so pruned units get zero gradient and zero update and stay
exactly zero; the loop re-applies the masks afterwards as well. GRPO knobs come
from ``tune.rl_options`` (validated into :class:`GRPOTuneConfig`, errors name
the field); the per-stage step count and learning rate come from PTL's budget.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from tqdm.auto import tqdm

from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig
from experiments.grpo.rewards import RewardSpec, get_reward
from experiments.grpo.rollout import RolloutConfig
from experiments.grpo.runner import DataSection
from experiments.grpo.tasks import TaskCodec, batch_at, byte_codec, chat_codec, make_tasks
from jaxlab.config import ConfigError, from_dict
from jaxlab.train.optim import OptimConfig
from jaxlab.transforms import apply_masks


@dataclasses.dataclass(frozen=True)
class GRPOTuneConfig:
    """``tune.rl_options`` of a PTL config."""

    prompts_per_step: int = 4
    data: DataSection = DataSection(train_tasks=512, max_operand=20)
    """The seeded training problems (``heldout_tasks`` is unused here)."""
    seed: int = 0
    grad_clip_norm: float = 1.0
    rollout: RolloutConfig = RolloutConfig(num_generations=8, max_new_tokens=32, temperature=1.0)
    loss: LossConfig = LossConfig(loss_type="dapo", epsilon_high=0.28)
    grpo: GRPOConfig = GRPOConfig()
    rewards: tuple[RewardSpec, ...] = (RewardSpec("math_accuracy", 1.0),)
    """Accuracy alone: with 0.5 x boxed_format the demo run learned the format and lost accuracy."""

    def __post_init__(self) -> None:
        if self.prompts_per_step < 1 or self.data.train_tasks < self.prompts_per_step:
            raise ValueError(
                f"prompts_per_step / data.train_tasks: expected 1 <= prompts_per_step <= train_tasks, "
                f"got {self.prompts_per_step}, {self.data.train_tasks}"
            )
        for spec in self.rewards:
            get_reward(spec.name)


def param_masks(params: Any, masks: Any, head_dim: int) -> Any:
    """PTL unit masks as a 0/1 tree shaped like ``params`` (the learner multiplies gradients by it)."""
    return apply_masks(jax.tree.map(jnp.ones_like, params), masks, head_dim)


class GRPOTuner:
    """``(model, stage, budget) -> model``: ``budget.steps`` GRPO steps on the masked model."""

    def __init__(
        self,
        cfg: GRPOTuneConfig,
        codec: TaskCodec,
        *,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        progress: bool = True,
    ):
        self.cfg, self.codec = cfg, codec
        self.warmup_steps, self.min_lr_ratio, self.progress = warmup_steps, min_lr_ratio, progress
        self.tasks = make_tasks("train", cfg.data.train_tasks, cfg.data.seed, cfg.data.max_operand)
        self.position = 0  # GRPO steps taken over all stages: the task stream and the PRNG continue from here
        self.last_history: list[dict] = []

    def __call__(self, model: nnx.Module, stage: Any, budget: Any) -> nnx.Module:
        params = nnx.state(model, nnx.Param)
        optim = OptimConfig(
            learning_rate=budget.learning_rate,
            warmup_steps=min(self.warmup_steps, budget.steps - 1),
            decay_steps=max(budget.steps, 1),
            min_lr_ratio=self.min_lr_ratio,
            weight_decay=0.0,
            grad_clip_norm=self.cfg.grad_clip_norm,
        )
        learner = GRPOLearner(
            model,
            decode=self.codec.decode,
            eos_id=self.codec.eos_id,
            pad_id=self.codec.pad_id,
            rewards=self.cfg.rewards,
            rollout=self.cfg.rollout,
            loss=self.cfg.loss,
            optim=optim,
            grpo=self.cfg.grpo,
            grad_masks=param_masks(params, stage.masks, stage.head_dim),
            token_bytes=(self.codec.token_bytes() if self.cfg.rollout.stop and self.codec.token_bytes else None),
        )
        key = jax.random.key(self.cfg.seed)
        self.last_history = []
        n = self.cfg.prompts_per_step
        for _ in tqdm(range(budget.steps), disable=not self.progress, desc=f"grpo {stage.track} {stage.index}"):
            batch = batch_at(self.tasks, self.position, n)
            m = learner.step(
                [self.codec.encode(t) for t in batch],
                [t.question for t in batch],
                {"answer": [t.answer for t in batch]},
                jax.random.fold_in(key, self.position),
            )
            self.position += 1
            self.last_history.append({"step": self.position, **m})
        return learner.model()

    def get_state(self) -> dict:
        return {"grpo_position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["grpo_position"])


def factory(run_cfg: Any, *, tokenizer: Any = None, eos: int | None = None, **_: Any) -> GRPOTuner:
    """The ``tune.rl_hook`` entry point: a GRPO tuner for a PTL run config (PTL's ``encode`` is not needed)."""
    tune = run_cfg.tune
    try:
        cfg = from_dict(GRPOTuneConfig, dict(tune.rl_options or {}), path="tune.rl_options")
    except ValueError as exc:
        raise ConfigError(f"tune.rl_options: {exc}") from None
    if tokenizer is not None:
        codec = chat_codec(tokenizer)
    elif eos is not None:  # tiny byte-level models (PTL's byte encoder: UTF-8 bytes, its EOS id)
        codec = byte_codec(eos)
    else:
        raise ValueError("ptl_tuner.factory: a model without a tokenizer needs eos=")
    return GRPOTuner(
        cfg,
        codec,
        warmup_steps=tune.warmup_steps,
        min_lr_ratio=tune.min_lr_ratio,
        progress=getattr(run_cfg, "progress", True),
    )
