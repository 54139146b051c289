"""Neuron-specific training: only the selected neurons' rows/columns move; everything else is frozen.

The seed trains a language-neuron set (shared, one language's exclusive, or a
random control) with every other gradient zeroed; ``gate_proj``, embeddings,
norms, ``lm_head`` and ``o_proj``'s bias are frozen outright. Zeroing gradients
is not enough under AdamW: decoupled weight decay moves every decayed weight
even at zero gradient. So :func:`neuron_optimizer` masks the gradients going in
(so clipping and the moments see only the trainable entries) *and* the updates
coming out (so decay cannot touch a frozen entry), with ``jnp.where`` rather than
a product so a non-finite value can never leak through a zero. The selection
lives in the optimizer state: one compiled train step serves every set, and
orbax checkpoints it with the moments. A frozen parameter gets ``p + 0.0``,
which is bit-identical for every value except ``-0.0``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.transforms.neuron_masks import NeuronMasks, map_neuron_masked


def trainable_mask(tree: Any, select: NeuronMasks) -> Any:
    """Bool pytree like ``tree``: True exactly on the selected units' ``up`` columns, ``down`` rows,
    ``q``/``k``/``v`` columns (and biases) and ``o`` rows (``select`` from ``selection_masks``)."""
    return map_neuron_masked(
        tree,
        select,
        lambda leaf, m: jnp.broadcast_to(m > 0, leaf.shape),
        "plnd",
        default=lambda leaf: jnp.zeros(leaf.shape, bool),
    )


def mask_to_selected(tree: Any, select: NeuronMasks) -> Any:
    """Zero every entry of a grads/updates pytree outside the selected units."""
    keep = trainable_mask(tree, select)
    return jax.tree.map(lambda x, k: jnp.where(k, x, jnp.zeros_like(x)), tree, keep)


class NeuronTrainState(NamedTuple):
    select: NeuronMasks
    inner: optax.OptState


def neuron_optimizer(tx: optax.GradientTransformation, select: NeuronMasks) -> optax.GradientTransformation:
    """Wrap ``tx`` (e.g. ``jaxlab.train.optim.make_optimizer``) so only the selected units change.

    Pass it as ``fit(..., tx=neuron_optimizer(make_optimizer(optim), select))``.
    """

    def init(params):
        return NeuronTrainState(jax.tree.map(jnp.asarray, select), tx.init(params))

    def update(updates, state, params=None):
        updates = mask_to_selected(updates, state.select)
        updates, inner = tx.update(updates, state.inner, params)
        return mask_to_selected(updates, state.select), NeuronTrainState(state.select, inner)

    return optax.GradientTransformation(init, update)
