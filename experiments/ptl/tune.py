"""The tune half of prune-tune: a small protocol and its implementations.

A tuner is any callable ``(model, stage, budget) -> model``. The loop hands it
the masked model, a :class:`Stage` (index, masks, track) and a :class:`Budget`,
and re-applies the masks to whatever comes back, so a tuner that ignores them
(an RL hook, say) still cannot revive pruned units. Built in: continual
pre-training on the code corpus (``cpt``), chat SFT (``sft``) and logit distillation from the
unpruned model on the code corpus (``distill``, :mod:`experiments.ptl.distill`), all through
``jaxlab.train.trainer.fit`` with :func:`jaxlab.transforms.masked_optimizer`, on the run's mesh, and
checkpointed inside the stage every ``tune.checkpoint_every`` steps (a killed run resumes mid-stage).
RL plugs in as ``tune.method: rl`` with ``tune.rl_hook: "package.module:factory"``,
where ``factory(cfg, tokenizer=, encode=, eos=) -> Tuner``; GRPO's is
``experiments.grpo.ptl_tuner:factory``.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

import jax
import numpy as np
from flax import nnx

from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.trainer import TrainConfig, fit
from jaxlab.transforms import Masks, masked_optimizer


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """How each stage tunes, and its budget."""

    method: Literal["cpt", "sft", "distill", "rl", "none"] = "cpt"
    steps: int = 4
    """Optimizer updates per stage (0 with ``tokens`` set: derived from the token budget)."""
    tokens: int = 0
    """Alternative per-stage budget in tokens: ``steps = ceil(tokens / (batch_size * seq_len))``."""
    learning_rate: float = 5e-5
    warmup_steps: int = 1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    checkpoint_every: int = 50
    """Checkpoint the stage's tuning (params, optimizer, data position) every this many steps, so a killed
    run resumes inside the stage; 0: only between stages. The stage's checkpoints go once it is done."""
    distill_temperature: float = 1.0
    """``distill``: softmax temperature T of both teacher and student logits (the loss is scaled by T^2)."""
    distill_alpha: float = 0.0
    """``distill``: weight of the LM cross-entropy; ``1 - alpha`` weights the KL to the teacher (Minitron: 0)."""
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
            raise ValueError(
                "steps: give exactly one per-stage budget, steps > 0 or tokens > 0 "
                f"(got steps={self.steps}, tokens={self.tokens})"
            )
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: expected >= 0 (0: between stages only), got {self.checkpoint_every!r}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature: expected > 0, got {self.distill_temperature!r}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"distill_alpha: expected a weight in [0, 1], got {self.distill_alpha!r}")
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
    """``(model, stage, budget) -> tuned model``. The loop hands over ``model``'s parameters: they are the
    track's own copy, never read again after the call, so a tuner may donate their buffers."""

    def __call__(self, model: nnx.Module, stage: Stage, budget: Budget) -> nnx.Module: ...


def budget_for(cfg: TuneConfig, tokens_per_step: int, multiplier: int = 1) -> Budget:
    """The per-stage budget (``multiplier`` stages' worth for the one-shot baseline)."""
    steps = cfg.steps if cfg.steps else -(-cfg.tokens // tokens_per_step)
    steps *= multiplier
    return Budget(steps=steps, tokens=steps * tokens_per_step, learning_rate=cfg.learning_rate)


class _StageCheckpointer(Checkpointer):
    """The trainer's checkpointer without the save at a stage's last step: the loop's stage checkpoint
    follows at once, so that save would be a second full write of the same state."""

    def should_save(self, step: int, final: bool = False) -> bool:
        return super().should_save(step, final=False)


class TrainerTuner:
    """Tune with ``jaxlab.train.trainer.fit`` on a data iterator that continues across stages.

    Every stage gets a fresh masked AdamW with warmup + cosine over its own budget
    (as the seed: one short run per iteration on a fresh chunk of data). With ``ckpt_root`` the stage's
    ``fit`` checkpoints under ``ckpt_root/stage_<k>`` every ``cfg.checkpoint_every`` steps and resumes from
    there (params, optimizer state with its masks, data position), so a killed run loses at most that many
    steps; the loop calls :meth:`stage_done` once its own stage checkpoint is written. ``teacher`` (the
    unpruned model) is required for ``method: distill``. ``donate=True`` trains on the buffers of the model
    it is handed (``fit(donate_model=True)``: one copy of the weights during tuning, not two) and so deletes
    them: for :func:`experiments.ptl.loop.run_track`, which hands over a copy it owns; ``False`` leaves the
    model handed in usable.
    """

    def __init__(
        self,
        data_iter: Any,
        cfg: TuneConfig,
        progress: bool = True,
        mesh: Any = None,
        ckpt_root: Path | None = None,
        teacher: nnx.Module | None = None,
        donate: bool = False,
    ):
        self.data_iter, self.cfg, self.progress, self.mesh = data_iter, cfg, progress, mesh
        self.donate = donate
        self.ckpt_root = None if ckpt_root is None else Path(ckpt_root)
        self.objective: tuple[Any, Any] = (None, None)
        if cfg.method == "distill":
            if teacher is None:
                raise ValueError("tune.method: 'distill' needs the unpruned model as teacher")
            from experiments.ptl.distill import distill_objective

            self.objective = distill_objective(teacher, cfg.distill_temperature, cfg.distill_alpha)
        self.last_history: list[dict] = []
        self.last_resumed_from: int | None = None

    def _checkpointer(self, stage: Stage, budget: Budget) -> Checkpointer | None:
        every = self.cfg.checkpoint_every
        if self.ckpt_root is None or every == 0 or every >= budget.steps:
            return None  # nothing would be saved before the stage's end
        return _StageCheckpointer(
            self.ckpt_root / f"stage_{stage.index}",
            CheckpointConfig(every_steps=every, keep=1, async_save=False, resume=True),
        )

    def __call__(self, model: nnx.Module, stage: Stage, budget: Budget) -> nnx.Module:
        optim = OptimConfig(
            learning_rate=budget.learning_rate,
            warmup_steps=min(self.cfg.warmup_steps, budget.steps - 1),
            decay_steps=max(budget.steps, 1),
            min_lr_ratio=self.cfg.min_lr_ratio,
            weight_decay=self.cfg.weight_decay,
        )
        tx = masked_optimizer(make_optimizer(optim), stage.masks, stage.head_dim)
        ckpt = self._checkpointer(stage, budget)
        loss_fn, context = self.objective
        try:
            result = fit(
                model,
                self.data_iter,
                optim,
                TrainConfig(steps=budget.steps, progress=self.progress),
                tx=tx,
                mesh=self.mesh,
                checkpointer=ckpt,
                loss_fn=loss_fn,
                loss_context=context,
                donate_model=self.donate,
            )
        finally:
            if ckpt is not None:
                ckpt.close()
        if result.resumed_from is not None:
            _check_resumed_masks(result.state.opt_state.masks, stage)
        self.last_history, self.last_resumed_from = result.history, result.resumed_from
        return result.model()

    def stage_done(self, index: int) -> None:
        """Drop stage ``index``'s mid-stage checkpoints (the loop's stage checkpoint now covers it)."""
        if self.ckpt_root is not None:
            shutil.rmtree(self.ckpt_root / f"stage_{index}", ignore_errors=True)

    def get_state(self) -> dict:
        return self.data_iter.get_state()

    def set_state(self, state: dict) -> None:
        from jaxlab.train.data import set_iterator_state

        set_iterator_state(self.data_iter, state)


def _check_resumed_masks(restored: Masks, stage: Stage) -> None:
    """A mid-stage checkpoint must carry the masks this stage just chose (scoring is deterministic)."""
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), restored, stage.masks)
    if not all(jax.tree.leaves(same)):
        raise RuntimeError(
            f"{stage.track} stage {stage.index}: the mid-stage tune checkpoint holds other prune masks "
            "than the ones this stage chose; delete its tune/stage_<k> folder to retune the stage"
        )


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
