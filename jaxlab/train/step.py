"""Pure, jitted train and eval steps over ``(graphdef, state, batch)``.

A model is split once with :func:`split_model` into a static ``graphdef``, the
trainable ``params`` and everything else (``rest``: buffers, caches). The steps
below rebuild the module with ``nnx.merge`` inside the trace, so they are pure
functions of arrays and can be jitted, sharded and checkpointed without any
module object crossing the ``jit`` boundary.

A batch is a mapping of ``[B, S]`` arrays: ``input_ids``, ``targets`` (the next
token) and ``loss_mask`` (1 where a target is trained on); ``positions`` and
``segment_ids`` (packed rows, :mod:`jaxlab.train.packing`) are passed to the
model when present.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxlab.train.loss import masked_cross_entropy, mean_loss

Batch = Mapping[str, jax.Array]
BATCH_KEYS = ("input_ids", "targets", "loss_mask")
LossFn = Callable[[nnx.State, Any, nnx.GraphDef, Batch], tuple[jax.Array, jax.Array]]
"""``(params, rest, graphdef, batch) -> (loss_sum, n_tokens)``: what a train step differentiates."""


class TrainState(NamedTuple):
    """Everything a train step reads and writes; a pytree, checkpointed as is."""

    params: nnx.State
    opt_state: optax.OptState


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, rest)``: trainable ``nnx.Param`` s apart from other state."""
    return nnx.split(model, nnx.Param, ...)


def _buffers(x: Any) -> set[int]:
    """The device buffers behind an array (one per addressable shard); empty for non-arrays."""
    if not isinstance(x, jax.Array):
        return set()
    try:
        return {s.data.unsafe_buffer_pointer() for s in x.addressable_shards}
    except Exception:  # noqa: BLE001 - a backend without raw pointers: fall back to object identity
        return {id(x)}


def copy_shared(tree: Any, *others: Any) -> Any:
    """``tree`` with every array leaf that shares a device buffer with a leaf of ``others`` copied.

    Why: a jitted step that donates ``tree`` deletes its buffers; any other pytree holding the same
    buffers (the caller's model, a teacher, the frozen base of another track) would be left with
    deleted arrays. Leaves that nothing else holds are passed through (no copy, no extra memory).
    """
    held: set[int] = set()
    for other in others:
        for leaf in jax.tree.leaves(other):
            held |= _buffers(leaf)
    if not held:
        return tree
    return jax.tree.map(lambda x: jnp.copy(x) if _buffers(x) & held else x, tree)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype`` (ints untouched)."""
    dtype = jnp.dtype(dtype)

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def check_batch(batch: Mapping[str, Any]) -> None:
    """Raise a clear error when a batch lacks a key or has mismatched shapes."""
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {missing}; expected keys {list(BATCH_KEYS)}, got {sorted(batch)}")
    shape = np.shape(batch["input_ids"])
    for key in BATCH_KEYS[1:]:
        if np.shape(batch[key]) != shape or len(shape) != 2:
            raise ValueError(
                f"batch[{key!r}] has shape {np.shape(batch[key])}; expected [B, S] equal to input_ids {shape}"
            )


def _loss_sum(params, rest, graphdef, batch):
    """``(loss_sum, n_tokens)`` of the model ``(graphdef, params, rest)`` (see :func:`model_loss`)."""
    return model_loss(nnx.merge(graphdef, params, rest), batch)


def model_loss(model: Any, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """``(loss_sum, n_tokens)`` of the masked causal-LM loss; MoE models add their router losses
    (``aux_loss``) per target token. A function of the module so wrappers (LoRA) can reuse it."""
    kw = dict(positions=batch.get("positions"), segment_ids=batch.get("segment_ids"))
    if getattr(model.config, "moe", None) is None:
        logits = model(batch["input_ids"], **kw)
        return masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
    logits, aux = model(batch["input_ids"], return_aux=True, **kw)
    loss_sum, n_tok = masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
    return loss_sum + aux["aux_loss"] * n_tok, n_tok


def _split_micro(batch: Batch, accum_steps: int) -> Batch:
    """``[B, ...] -> [accum, B/accum, ...]`` taking rows ``j, j+accum, ...`` for micro-batch j.

    Strided (not contiguous) so that each micro-batch spans every data-parallel
    shard of a batch-sharded input instead of living on a few devices.
    """

    def split(x):
        b = x.shape[0]
        x = x.reshape((b // accum_steps, accum_steps) + x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return {k: split(v) for k, v in batch.items()}


def train_step(
    graphdef: nnx.GraphDef,
    state: TrainState,
    rest: nnx.State,
    batch: Batch,
    *,
    tx: optax.GradientTransformation,
    accum_steps: int = 1,
    loss_fn: LossFn | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update on ``batch``; returns the new state and metrics.

    ``loss_fn(params, rest, graphdef, batch) -> (loss_sum, n_tokens)`` replaces the causal-LM
    loss (e.g. logit distillation, whose ``rest`` then also carries the frozen teacher).

    With ``accum_steps > 1`` the batch is split into micro-batches whose
    token-weighted gradient *sums* are accumulated in float32 under
    ``lax.scan``, so the update equals the one for the whole batch at once.
    """
    params = state.params
    grad_fn = jax.value_and_grad(_loss_sum if loss_fn is None else loss_fn, has_aux=True)
    if accum_steps == 1:
        (loss_sum, n_tok), grads = grad_fn(params, rest, graphdef, batch)
        grads = cast_floating(grads, jnp.float32)
    else:

        def body(carry, micro):
            g_acc, l_acc, n_acc = carry
            (l, n), g = grad_fn(params, rest, graphdef, micro)
            g_acc = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), g_acc, g)
            return (g_acc, l_acc + l, n_acc + n), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
        (grads, loss_sum, n_tok), _ = jax.lax.scan(body, init, _split_micro(batch, accum_steps))
    grads = jax.tree.map(lambda g: g / jnp.maximum(n_tok, 1.0), grads)
    grad_norm = optax.tree.norm(grads)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    updates, opt_state = tx.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": mean_loss(loss_sum, n_tok), "tokens": n_tok, "grad_norm": grad_norm}
    return TrainState(params, opt_state), metrics


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    accum_steps: int = 1,
    donate: bool = False,
    loss_fn: LossFn | None = None,
) -> Callable[[TrainState, nnx.State, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Jit :func:`train_step` with the static parts bound: ``step(state, rest, batch)``.

    ``donate=True`` lets XLA reuse the old state's buffers for the new one
    (halves peak memory); the caller must not touch the passed-in state again.
    """
    if accum_steps < 1:
        raise ValueError(f"accum_steps: expected >= 1, got {accum_steps}")
    fn = functools.partial(train_step, graphdef, tx=tx, accum_steps=accum_steps, loss_fn=loss_fn)

    def checked(state, rest, batch, check_only: bool = False):
        check_batch(batch)
        b = np.shape(batch["input_ids"])[0]
        if b % accum_steps:
            raise ValueError(f"batch size {b} is not divisible by grad_accum_steps={accum_steps}")
        return None if check_only else jitted(state, rest, batch)

    jitted = jax.jit(fn, donate_argnums=(0,) if donate else ())
    checked.jitted = jitted  # for .lower(...).compile(): memory analysis, one compile reused by the trainer
    return checked


def eval_step(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, batch: Batch):
    """``(loss_sum, n_tokens)`` of ``batch`` under the masked causal-LM loss."""
    return _loss_sum(params, rest, graphdef, batch)


@functools.lru_cache(maxsize=8)
def _jitted_eval(graphdef):
    return jax.jit(functools.partial(eval_step, graphdef))


def evaluate(
    model_or_split: nnx.Module | tuple[nnx.GraphDef, nnx.State, nnx.State],
    batches: Iterable[Mapping[str, Any]],
) -> dict[str, float]:
    """Token-weighted mean loss and perplexity over ``batches``.

    Accepts a module or a ``(graphdef, params, rest)`` triple so callers in the
    middle of functional training need not rebuild the module.
    """
    if isinstance(model_or_split, nnx.Module):
        graphdef, params, rest = split_model(model_or_split)
    else:
        graphdef, params, rest = model_or_split
    step = _jitted_eval(graphdef)
    total, count = 0.0, 0.0
    for batch in batches:
        check_batch(batch)
        loss_sum, n_tok = step(params, rest, {k: jnp.asarray(v) for k, v in batch.items()})
        total += float(loss_sum)
        count += float(n_tok)
    if count == 0:
        raise ValueError("evaluate: the batches contain no target tokens (all loss_mask == 0)")
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}


def perplexity(
    model_or_split: nnx.Module | tuple[nnx.GraphDef, nnx.State, nnx.State],
    batches: Iterable[Mapping[str, Any]],
) -> float:
    """``exp(token-weighted mean NLL)`` of the model over ``batches``."""
    return evaluate(model_or_split, batches)["perplexity"]
