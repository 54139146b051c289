"""The GRPO objective per token and its aggregations (grpo, bnpo, dapo, dr_grpo).

Per token, with ratio ``r = exp(logp - logp_old)`` and the completion's advantage ``A``:
``l = -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + beta * KL``, KL to the frozen reference by
the k3 estimator ``exp(d) - d - 1`` (``d = logp_ref - logp``; TRL's choice), or k1 ``-d`` (Tunix)
or k2 ``d^2 / 2``. The aggregations follow TRL's ``GRPOTrainer._compute_loss`` exactly, so that a
step here and a step there give the same loss and gradients on the same inputs (tests/grpo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
KL_ESTIMATORS = ("k1", "k2", "k3")


@dataclass(frozen=True)
class LossConfig:
    """How the surrogate is clipped, regularised and averaged."""

    loss_type: str = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    kl_estimator: str = "k3"
    temperature: float = 1.0
    kl_ratio_correction: bool = False  # KL x importance ratio (DeepSeek-V3.2 unbiased KL; TRL use_bias_correction_kl)
    max_completion_length: int | None = None  # dr_grpo's constant normaliser

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator: expected one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        for name in ("epsilon_low", "epsilon_high", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature: expected > 0 (log-probs are of logits / temperature), got {self.temperature}"
            )
        if self.loss_type == "dr_grpo" and not self.max_completion_length:
            raise ValueError(
                "max_completion_length: dr_grpo divides by G x max_completion_length; expected a positive int"
            )


def kl_penalty(logps: jax.Array, ref_logps: jax.Array, estimator: str) -> jax.Array:
    """Per-token KL(pi || pi_ref) estimate from sampled tokens' log-probs."""
    d = ref_logps - logps
    if estimator == "k3":
        return jnp.exp(d) - d - 1.0
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    raise ValueError(f"kl_estimator: expected one of {KL_ESTIMATORS}, got {estimator!r}")


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def per_token_objective(
    logps: jax.Array,
    old_logps: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    cfg: LossConfig,
    ref_logps: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``[B, T]`` per-token loss and the clip / KL statistics TRL logs."""
    ratio = jnp.exp(logps - old_logps)
    adv = advantages[:, None]
    clipped = jnp.clip(ratio, 1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)
    loss = -jnp.minimum(ratio * adv, clipped * adv)
    low = (ratio < 1.0 - cfg.epsilon_low) & (adv < 0)
    high = (ratio > 1.0 + cfg.epsilon_high) & (adv > 0)
    stats = {
        "clip_low": _masked_mean(low, mask),
        "clip_high": _masked_mean(high, mask),
        "clip_region": _masked_mean(low | high, mask),
    }
    if cfg.beta > 0.0:
        if ref_logps is None:
            raise ValueError("ref_logps: beta > 0 needs the reference model's per-token log-probs")
        kl = kl_penalty(logps, ref_logps, cfg.kl_estimator)
        if cfg.kl_ratio_correction:
            kl = kl * ratio
        loss = loss + cfg.beta * kl
        stats["kl"] = _masked_mean(kl, mask)
    return loss, stats


def aggregate(
    per_token: jax.Array,
    mask: jax.Array,
    cfg: LossConfig,
    num_items: jax.Array | float | None = None,
    num_rows: jax.Array | float | None = None,
) -> jax.Array:
    """Reduce ``[B, T]`` to the scalar loss.

    ``num_items`` / ``num_rows``: completion tokens / completions in the whole optimisation batch.
    Given, dapo, grpo and dr_grpo divide by them, so micro-batch losses (padded rows included)
    sum to the full batch's loss; absent, the micro-batch is the batch.
    """
    mask = mask.astype(per_token.dtype)
    total = (per_token * mask).sum()
    rows = per_token.shape[0] if num_rows is None else num_rows
    if cfg.loss_type == "grpo":
        return ((per_token * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)).sum() / rows
    if cfg.loss_type == "bnpo":
        return total / jnp.maximum(mask.sum(), 1.0)
    if cfg.loss_type == "dr_grpo":
        return total / (rows * cfg.max_completion_length)
    denom = mask.sum() if num_items is None else num_items
    return total / jnp.maximum(denom, 1.0)


def completion_logps(
    model: nnx.Module,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    completion_ids: jax.Array,
    completion_mask: jax.Array,
    temperature: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Per-token log-probs and entropies ``[B, C]`` of the completion under ``logits / temperature``.

    Prompts are left-padded and completions right-padded, so one causal pass over
    ``concat(prompt, completion)`` scores every completion token; positions count real tokens only,
    as in jaxlab.generate, so the scores match what the sampler saw. Logits are computed from
    position ``P - 1`` on only (``logits_start``): the prompt's other positions predict nothing scored.
    """
    ids = jnp.concatenate([prompt_ids, completion_ids], axis=1)
    mask = jnp.concatenate([prompt_mask, completion_mask], axis=1)
    p, c = prompt_ids.shape[1], completion_ids.shape[1]
    logits = model(ids, attention_mask=mask, logits_start=p - 1)  # [B, C + 1, V]: positions P-1 .. P+C-1
    logits = logits[:, :c].astype(jnp.float32) / temperature
    logp_all = jax.nn.log_softmax(logits, axis=-1)
    logps = jnp.take_along_axis(logp_all, completion_ids[..., None], axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
    return logps, entropy


def policy_loss(
    params: nnx.State, rest: nnx.State, graphdef: nnx.GraphDef, batch: Mapping[str, Any], cfg: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The differentiable GRPO loss of one (micro-)batch; ``jax.grad`` w.r.t. ``params``.

    ``batch``: prompt_ids/prompt_mask [B, P], completion_ids/completion_mask [B, C], advantages [B],
    old_logps [B, C] (the sampling policy's), optional ref_logps [B, C], num_items and num_rows (scalars).
    Without ``old_logps`` the batch is on-policy (mu = 1, the first and only pass over the rollout):
    the old log-probs are the current ones detached, ratio 1 with the gradient of ``logp`` (TRL does
    the same), and the separate old-policy forward is saved.
    """
    model = nnx.merge(graphdef, params, rest)
    mask = batch["completion_mask"].astype(jnp.float32)
    logps, entropy = completion_logps(
        model,
        batch["prompt_ids"],
        batch["prompt_mask"],
        batch["completion_ids"],
        batch["completion_mask"],
        cfg.temperature,
    )
    old = batch["old_logps"] if "old_logps" in batch else jax.lax.stop_gradient(logps)
    per_token, stats = per_token_objective(logps, old, batch["advantages"], mask, cfg, batch.get("ref_logps"))
    loss = aggregate(per_token, mask, cfg, batch.get("num_items"), batch.get("num_rows"))
    stats["entropy"] = _masked_mean(entropy, mask)
    return loss, stats
