"""AdamW with linear warmup + cosine decay and global-norm clipping.

Gradient accumulation is *not* done here with ``optax.MultiSteps``: that
averages per-micro-batch mean gradients, which differs from the big-batch
gradient whenever loss masks give micro-batches different token counts (chat
SFT). Instead :mod:`jaxlab.train.step` sums token-weighted gradients over
``grad_accum_steps`` micro-batches inside one jitted step and applies this
optimizer once, so one optimizer update == one train step == one schedule tick.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer hyper-parameters (the ``optim`` section of a run config)."""

    learning_rate: float = 3e-4
    """Peak learning rate, reached at the end of warmup."""
    warmup_steps: int = 10
    decay_steps: int = 100
    """Update index (warmup included) at which the cosine reaches ``min_lr_ratio * lr``."""
    min_lr_ratio: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    """Decoupled decay, applied to matrices only (ndim >= 2), not to norms or biases."""
    grad_clip_norm: float = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    grad_accum_steps: int = 1
    """Micro-batches summed per optimizer update; must divide the batch size."""

    def __post_init__(self) -> None:
        checks = [
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("decay_steps", self.decay_steps > self.warmup_steps, f"> warmup_steps ({self.warmup_steps})"),
            ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]"),
            ("b1", 0.0 <= self.b1 < 1.0, "in [0, 1)"),
            ("b2", 0.0 <= self.b2 < 1.0, "in [0, 1)"),
            ("eps", self.eps > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip_norm", self.grad_clip_norm >= 0, ">= 0 (0 disables clipping)"),
            ("grad_accum_steps", self.grad_accum_steps >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
    """Learning rate of update ``count + 1`` (optax passes the 0-based update count).

    Update ``k`` (1-based) uses ``lr * k / warmup_steps`` during warmup, reaches
    ``lr`` at ``k = warmup_steps``, then follows a cosine down to
    ``min_lr_ratio * lr`` at ``k = decay_steps`` and stays there. Unlike
    ``optax.warmup_cosine_decay_schedule(init_value=0)`` no update is spent at
    learning rate 0, which matters for the short runs a CPU can afford.
    """
    peak, floor = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio
    warmup, decay = cfg.warmup_steps, cfg.decay_steps

    def schedule(count):
        k = jnp.asarray(count, jnp.float32) + 1.0
        warm = peak * k / max(warmup, 1)
        progress = jnp.clip((k - warmup) / (decay - warmup), 0.0, 1.0)
        cosine = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(k <= warmup, warm, cosine)

    return schedule


def _decay_mask(params):
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """``clip_by_global_norm -> adamw(schedule)``; moments are kept in float32."""
    parts = []
    if cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(
        optax.adamw(
            learning_rate=make_schedule(cfg),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=_decay_mask,
            mu_dtype=jnp.float32,
        )
    )
    return optax.chain(*parts)
