"""The tune half of prune-tune: a small protocol and its implementations.

A tuner is any callable ``(model, stage, budget) -> model``. The loop hands it
the masked model, a :class:`Stage` (index, masks, track) and a :class:`Budget`,
and re-applies the masks to whatever comes back, so a tuner that ignores them
(an RL hook, say) still cannot revive pruned units. Built in: continual
pre-training on the code corpus (``cpt``) and chat SFT (``sft``), both through
``jaxlab.train.trainer.fit`` with :func:`jaxlab.transforms.masked_optimizer`.
RL plugs in as ``tune.method: rl`` with ``tune.rl_hook: "package.module:factory"``,
where ``factory(cfg, tokenizer=, encode=, eos=) -> Tuner``; GRPO's is
``experiments.grpo.ptl_tuner:factory``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Literal, Protocol

from flax import nnx

from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.trainer import TrainConfig, fit
from jaxlab.transforms import Masks, masked_optimizer


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """How each stage tunes, and its budget."""

    method: Literal["cpt", "sft", "rl", "none"] = "cpt"
    steps: int = 4
    """Optimizer updates per stage (0 with ``tokens`` set: derived from the token budget)."""
    tokens: int = 0
    """Alternative per-stage budget in tokens: ``steps = ceil(tokens / (batch_size * seq_len))``."""
    learning_rate: float = 5e-5
    warmup_steps: int = 1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    sft_data: str | None = None
    """``sft``: JSONL of ``{"messages": [...]}`` conversations."""
    rl_hook: str | None = None
    """``rl``: ``"module:factory"``; ``factory(run_config, tokenizer=, encode=, eos=)`` returns a tuner
    ``(model, stage, budget) -> model``. GRPO: ``experiments.grpo.ptl_tuner:factory``."""
    rl_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """``rl``: options for the hook's own config (GRPO: ``experiments.grpo.ptl_tuner.GRPOTuneConfig``)."""

    def __post_init__(self) -> None:
        if self.steps < 0 or self.tokens < 0:
            raise ValueError(f"steps/tokens: expected >= 0, got steps={self.steps}, tokens={self.tokens}")
        if self.method != "none" and (self.steps == 0) == (self.tokens == 0):
            raise ValueError("steps: give exactly one per-stage budget, steps > 0 or tokens > 0 "
                             f"(got steps={self.steps}, tokens={self.tokens})")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate!r}")
        if self.method == "sft" and not self.sft_data:
            raise ValueError("sft_data: method 'sft' needs a JSONL path of chat conversations")
        if self.method == "rl" and (not self.rl_hook or ":" not in self.rl_hook):
            raise ValueError(f"rl_hook: method 'rl' needs 'package.module:factory', got {self.rl_hook!r}")


@dataclasses.dataclass(frozen=True)
class Budget:
    steps: int
    tokens: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int
    """1-based stage number within its track."""
    stages: int
    track: str
    """``ptl`` or ``one_shot``."""
    masks: Masks
    head_dim: int


class Tuner(Protocol):
    def __call__(self, model: nnx.Module, stage: Stage, budget: Budget) -> nnx.Module: ...


def budget_for(cfg: TuneConfig, tokens_per_step: int, multiplier: int = 1) -> Budget:
    """The per-stage budget (``multiplier`` stages' worth for the one-shot baseline)."""
    steps = cfg.steps if cfg.steps else -(-cfg.tokens // tokens_per_step)
    steps *= multiplier
    return Budget(steps=steps, tokens=steps * tokens_per_step, learning_rate=cfg.learning_rate)


class TrainerTuner:
    """Tune with ``jaxlab.train.trainer.fit`` on a data iterator that continues across stages.

    Every stage gets a fresh masked AdamW with warmup + cosine over its own budget
    (as the seed: one short run per iteration on a fresh chunk of data).
    """

    def __init__(self, data_iter: Any, cfg: TuneConfig, progress: bool = True):
        self.data_iter, self.cfg, self.progress = data_iter, cfg, progress

    def __call__(self, model: nnx.Module, stage: Stage, budget: Budget) -> nnx.Module:
        optim = OptimConfig(learning_rate=budget.learning_rate, warmup_steps=min(self.cfg.warmup_steps, budget.steps - 1),
                            decay_steps=max(budget.steps, 1), min_lr_ratio=self.cfg.min_lr_ratio,
                            weight_decay=self.cfg.weight_decay)
        tx = masked_optimizer(make_optimizer(optim), stage.masks, stage.head_dim)
        result = fit(model, self.data_iter, optim, TrainConfig(steps=budget.steps, progress=self.progress), tx=tx)
        self.last_history = result.history
        return result.model()

    def get_state(self) -> dict:
        return self.data_iter.get_state()

    def set_state(self, state: dict) -> None:
        from jaxlab.train.data import set_iterator_state

        set_iterator_state(self.data_iter, state)


def load_rl_hook(spec: str) -> Callable[[Any], Tuner]:
    """Import ``"module:factory"``; errors name the field."""
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"tune.rl_hook: cannot import {spec!r} ({exc})") from exc
    if not callable(fn):
        raise ValueError(f"tune.rl_hook: {spec!r} is not callable")
    return fn
