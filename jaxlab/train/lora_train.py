"""Training with LoRA: :func:`jaxlab.train.trainer.fit` over the adapters, the base frozen.

The runners (pretrain/CPT, SFT) call :func:`fit_lora` when their config has a
``lora:`` section. The optimizer, its state and the checkpoints hold the adapters
only (a few hundred KB for SmolLM2 at rank 8, instead of the 135M weights and their
two Adam moments); the base weights go in as ``loss_context``, so they are traced
but never differentiated and never updated. A runner with its own objective (GRPO)
passes ``loss=`` a ``(model, batch) -> (loss_sum, n_tokens)`` function.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from flax import nnx

from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import TrainState, model_loss, split_model
from jaxlab.train.trainer import EvalFn, FitResult, TrainConfig, fit
from jaxlab.transforms.lora import LoRAAdapters, LoRAConfig, ModelLoss, init_lora, lora_loss_fn, merge_lora


@dataclasses.dataclass
class LoRAFitResult(FitResult):
    """``graphdef``/``state.params``/``rest`` are the *merged* model (so ``model()``, evaluation and export
    work as after full fine-tuning); ``state.opt_state`` is the adapters' optimizer state."""

    adapters: LoRAAdapters | None = None


def fit_lora(
    model: nnx.Module,
    lora: LoRAConfig,
    data: Iterable[Mapping[str, Any]],
    optim_cfg: OptimConfig,
    train_cfg: TrainConfig,
    *,
    eval_fn: EvalFn | None = None,
    mesh: Any = None,
    loss: ModelLoss = model_loss,
    **fit_kwargs: Any,
) -> LoRAFitResult:
    """Train LoRA adapters on ``model`` (left unchanged) and return the merged result.

    ``eval_fn(graphdef, params, rest)`` receives the merged model, as it would under plain ``fit``.
    ``fit_kwargs`` (``checkpointer``, ``metrics``, ``on_step``, ``tx``) go to :func:`fit`.
    """
    adapters = init_lora(model, lora)
    base_graphdef, base_params, base_rest = split_model(model)
    if mesh is not None:
        from jaxlab.sharding import shard_state

        base_params, base_rest = shard_state(base_params, mesh), shard_state(base_rest, mesh)

    def merged(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State) -> nnx.State:
        return merge_lora(base_params, nnx.merge(graphdef, params, rest))

    wrapped_eval = None
    if eval_fn is not None:

        def wrapped_eval(graphdef, params, rest):
            return eval_fn(base_graphdef, merged(graphdef, params, rest), base_rest)

    result = fit(
        adapters,
        data,
        optim_cfg,
        train_cfg,
        eval_fn=wrapped_eval,
        mesh=mesh,
        loss_fn=lora_loss_fn(base_graphdef, loss),
        loss_context=(base_params, base_rest),
        **fit_kwargs,
    )
    trained = nnx.merge(result.graphdef, result.state.params, result.rest)
    merged_params = merge_lora(base_params, trained)
    return LoRAFitResult(
        base_graphdef,
        TrainState(merged_params, result.state.opt_state),
        base_rest,
        result.step,
        result.resumed_from,
        result.history,
        adapters=trained,
    )


def fit_maybe_lora(
    model: nnx.Module,
    lora: LoRAConfig | None,
    data: Iterable[Mapping[str, Any]],
    optim_cfg: OptimConfig,
    train_cfg: TrainConfig,
    **kwargs: Any,
) -> FitResult:
    """:func:`fit_lora` when the config has a ``lora`` section, else plain :func:`fit` (full fine-tuning)."""
    if lora is None:
        return fit(model, data, optim_cfg, train_cfg, **kwargs)
    return fit_lora(model, lora, data, optim_cfg, train_cfg, **kwargs)


def save_adapter(result: FitResult, model_config: Any, out_dir: Any, base_model: str | None = None) -> Any:
    """Write the peft adapter folder of a LoRA run (``None`` for a full fine-tuning run)."""
    if not isinstance(result, LoRAFitResult):
        return None
    from jaxlab.transforms.lora import save_peft

    return save_peft(result.adapters, model_config, out_dir, base_model=base_model)
