"""Minitron-style logit distillation for the tune half of prune-tune (``tune.method: distill``).

Why: after pruning, the unpruned model is the best available target for what the small model should
predict: Minitron (Muralidharan et al., 2024, "Compact Language Models via Pruning and Knowledge
Distillation") retrains pruned models on the forward KL between the original model's and the pruned
model's next-token distributions instead of on the data's one-hot labels alone.

The loss per counted token is ``alpha * CE(student, target) + (1 - alpha) * T^2 * KL(p_T || q_T)`` with
``p_T = softmax(teacher_logits / T)``, ``q_T = softmax(student_logits / T)``; the ``T^2`` keeps gradient
sizes comparable across temperatures (Hinton et al., 2015). The teacher runs in the same jitted train step:
its state rides in the step's ``rest`` argument (``fit(..., loss_context=teacher)``), so it is traced (no
constants baked into the program), sharded like the student on a mesh, and never differentiated
(``stop_gradient`` on its logits as well, so no gradient can reach it through any path).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlab.train.loss import token_losses


def distill_token_losses(
    student: jax.Array, teacher: jax.Array, targets: jax.Array, temperature: float, alpha: float
) -> jax.Array:
    """``[B, S]`` per-token ``alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T)`` in float32."""
    s = student.astype(jnp.float32) / temperature
    t = jax.lax.stop_gradient(teacher.astype(jnp.float32)) / temperature
    log_q, log_p = jax.nn.log_softmax(s, axis=-1), jax.nn.log_softmax(t, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    out = (1.0 - alpha) * temperature**2 * kl
    if alpha:
        out = out + alpha * token_losses(student, targets)
    return out


def distill_loss_sum(
    student: jax.Array, teacher: jax.Array, targets: jax.Array, loss_mask: jax.Array, temperature: float, alpha: float
) -> tuple[jax.Array, jax.Array]:
    """``(loss_sum, n_tokens)`` over ``loss_mask`` tokens (the trainer's sum-and-count convention)."""
    mask = loss_mask.astype(jnp.float32)
    per = distill_token_losses(student, teacher, targets, temperature, alpha)
    return jnp.sum(jnp.where(mask > 0, per, 0.0) * mask), jnp.sum(mask)


def _loss(
    params: nnx.State,
    rest_and_teacher: tuple,
    graphdef: nnx.GraphDef,
    batch: dict,
    *,
    teacher_graphdef,
    temperature: float,
    alpha: float,
) -> tuple[jax.Array, jax.Array]:
    rest, (t_params, t_rest) = rest_and_teacher
    positions = batch.get("positions")
    student = nnx.merge(graphdef, params, rest)(batch["input_ids"], positions=positions)
    teacher = nnx.merge(teacher_graphdef, t_params, t_rest)(batch["input_ids"], positions=positions)
    return distill_loss_sum(student, teacher, batch["targets"], batch["loss_mask"], temperature, alpha)


def distill_objective(teacher: nnx.Module, temperature: float, alpha: float) -> tuple[Any, tuple]:
    """``(loss_fn, loss_context)`` for :func:`jaxlab.train.trainer.fit`: distil from frozen ``teacher``."""
    if temperature <= 0:
        raise ValueError(f"tune.distill_temperature: expected > 0, got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"tune.distill_alpha: expected a weight in [0, 1], got {alpha!r}")
    graphdef, params, rest = nnx.split(teacher, nnx.Param, ...)
    fn = functools.partial(_loss, teacher_graphdef=graphdef, temperature=float(temperature), alpha=float(alpha))
    return fn, (params, rest)
