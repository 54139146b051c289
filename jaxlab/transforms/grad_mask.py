"""Keep pruned units pruned while tuning: masked gradients and a masking optimizer wrapper.

Zeroing gradients alone is not enough with AdamW when an optimizer state
carries moments from before a unit was pruned, so :func:`masked_optimizer`
masks both the incoming gradients and the outgoing updates. The masks live in
the optimizer *state* (not in the closure), so they are traced arguments: the
same compiled train step serves every pruning stage, and orbax checkpoints
them with the rest of the optimizer state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from jaxlab.transforms.masks import Masks, apply_masks


def mask_gradients(grads: Any, masks: Masks, head_dim: int) -> Any:
    """Zero the gradients of pruned units (same paths and rules as :func:`apply_masks`)."""
    return apply_masks(grads, masks, head_dim)


class MaskedState(NamedTuple):
    masks: Masks
    inner: optax.OptState


def masked_optimizer(tx: optax.GradientTransformation, masks: Masks, head_dim: int) -> optax.GradientTransformation:
    """Wrap ``tx`` so that pruned parameters get zero gradient and zero update."""

    def init(params):
        return MaskedState(jax.tree.map(lambda m: m, masks), tx.init(params))

    def update(updates, state, params=None):
        updates = apply_masks(updates, state.masks, head_dim)
        updates, inner = tx.update(updates, state.inner, params)
        return apply_masks(updates, state.masks, head_dim), MaskedState(state.masks, inner)

    return optax.GradientTransformation(init, update)
