"""Masked causal-LM cross-entropy.

The loss is returned as a *sum* plus a token count rather than a mean, so that
gradient accumulation and multi-host reduction can weight every target token
equally: the mean over a big batch is ``sum(loss_sums) / sum(counts)``, which
a mean of per-micro-batch means is not when loss masks differ between them.
Logits are upcast to float32 before the softmax whatever the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_losses(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token negative log-likelihood ``[B, S]`` in float32.

    ``logits`` is ``[B, S, V]`` (any float dtype), ``targets`` is ``[B, S]`` int.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"token_losses: expected logits [B, S, V] and targets [B, S]; "
            f"got logits {logits.shape} and targets {targets.shape}"
        )
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return log_z - target_logit


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return ``(loss_sum, n_tokens)`` over positions where ``loss_mask`` is set.

    ``loss_mask`` is ``[B, S]`` (bool or 0/1); masked-out positions contribute
    nothing, including through NaN/inf logits at padded positions.
    """
    if loss_mask.shape != targets.shape:
        raise ValueError(
            f"masked_cross_entropy: loss_mask shape {loss_mask.shape} must equal targets shape {targets.shape}"
        )
    mask = loss_mask.astype(jnp.float32)
    nll = token_losses(logits, targets)
    loss_sum = jnp.sum(jnp.where(mask > 0, nll, 0.0) * mask)
    return loss_sum, jnp.sum(mask)


def mean_loss(loss_sum: jax.Array, n_tokens: jax.Array) -> jax.Array:
    """``loss_sum / n_tokens``, defined as 0 for a batch with no target tokens."""
    return loss_sum / jnp.maximum(n_tokens, 1.0)
