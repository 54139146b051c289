"""Routed-expert test problems shared by the EP tests: one hot expert, and loss + gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.parallel import routed_experts


def hot_problem(hot_share: float, seed: int, tokens: int, d_model: int, d_ff: int, experts: int):
    """(x, ids, combine weights, w_gate, w_up, w_down), top-2: ``hot_share`` of first picks are expert 3."""
    rng = np.random.default_rng(seed)
    first = np.where(rng.random(tokens) < hot_share, 3, rng.integers(0, experts, tokens))
    second = (first + 1 + rng.integers(0, experts - 1, tokens)) % experts
    arrays = (
        rng.normal(size=(tokens, d_model)),
        rng.random(size=(tokens, 2)),
        rng.normal(size=(experts, d_model, d_ff)) / 4,
        rng.normal(size=(experts, d_model, d_ff)) / 4,
        rng.normal(size=(experts, d_ff, d_model)) / 5,
    )
    x, cw, wg, wu, wd = (jnp.asarray(a, jnp.float32) for a in arrays)
    return x, jnp.asarray(np.stack([first, second], 1), jnp.int32), cw, wg, wu, wd


def loss_and_grads(ep, mesh, config, args):
    """Jitted value and gradients (x and the three weights) of sum(sin(y) * y); aux (y, stats)."""
    x, ids, cw, wg, wu, wd = args

    def loss(x, wg, wu, wd):
        y, stats = routed_experts(x, ids, cw, wg, wu, wd, ep=ep, mesh=mesh, config=config)
        return jnp.sum(jnp.sin(y) * y), (y, stats)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(x, wg, wu, wd)
