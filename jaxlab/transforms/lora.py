"""LoRA over a decoder's parameter pytree: adapters, the adapted forward, merging and peft export.

A LoRA adapter on a ``Linear`` at module path ``layers.3.attn.q_proj`` (kernel
``[in, out]``) adds ``scale * dropout(x) @ a @ b`` to its output, with
``a [in, r]`` (random) and ``b [r, out]`` (zeros, so training starts at the base
model exactly) and ``scale = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), as
``peft`` defines it. Targets are chosen by path pattern, so nothing here depends
on module classes beyond the parameter paths.

The adapters live in their own small module (:class:`LoRAAdapters`) whose
``nnx.Param`` s are the only trainable state: the trainer, optimizer and
checkpoints see adapters only, and the base weights travel as the train step's
``loss_context`` (traced, never differentiated; see
:func:`jaxlab.train.trainer.fit`). :func:`lora_loss_fn` builds that loss for any
``loss(model, batch)``, which is how a runner (pretrain, SFT, GRPO) trains with
LoRA. :func:`merge_lora` folds the adapters back into the weights;
:func:`save_peft` writes ``adapter_config.json`` + ``adapter_model.safetensors``
under peft's own key names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ModelLoss = Callable[[Any, Mapping[str, jax.Array]], tuple[jax.Array, jax.Array]]
"""``(model, batch) -> (loss_sum, n_tokens)``: the objective LoRA trains (see :func:`lora_loss_fn`)."""


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """The ``lora`` section of a training config (absent: full fine-tuning)."""

    rank: int = 8
    """``r``: the adapters' inner width."""
    alpha: float = 16.0
    """Scale numerator: the update is ``alpha / rank * x @ a @ b``."""
    dropout: float = 0.0
    """Dropout on the adapter's input while training (peft's ``lora_dropout``); never at eval."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module path patterns (``fnmatch``): a bare name such as ``q_proj`` matches that module in every layer,
    ``layers.0.*`` every Linear of layer 0, ``*mlp*`` the MLPs; each must match at least one Linear."""
    use_rslora: bool = False
    """rsLoRA: scale by ``alpha / sqrt(rank)`` instead of ``alpha / rank``."""
    seed: int = 0
    """Initialisation of ``a`` and the dropout masks."""

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", (self.target_modules,))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank: expected an integer >= 1, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha: expected a positive number, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout: expected a number in [0, 1), got {self.dropout!r}")
        if not self.target_modules or not all(isinstance(p, str) and p for p in self.target_modules):
            raise ValueError(f"lora.target_modules: expected non-empty path patterns, got {self.target_modules!r}")

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


def _path_str(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)


def linear_paths(params: nnx.State) -> dict[str, tuple[int, int]]:
    """Module path -> ``(in, out)`` of every 2-D ``kernel`` (the Linear layers; MoE expert stacks are 3-D)."""
    out = {}
    for path, var in params.flat_state():
        if path[-1] == "kernel" and len(var.shape) == 2:
            out[_path_str(path[:-1])] = tuple(var.shape)
    return out


def _matches(module: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(module, pattern) or fnmatch.fnmatchcase(module, "*." + pattern)


def find_targets(params: nnx.State, patterns: Sequence[str]) -> tuple[str, ...]:
    """The Linear module paths the patterns select, in parameter order; an unmatched pattern is an error."""
    linears = linear_paths(params)
    for pattern in patterns:
        if not any(_matches(m, pattern) for m in linears):
            names = sorted({m.rsplit(".", 1)[-1] for m in linears})
            raise ValueError(f"lora.target_modules: {pattern!r} matches no Linear layer; module names here: {names}")
    return tuple(m for m in linears if any(_matches(m, p) for p in patterns))


class LoRAAdapters(nnx.Module):
    """The adapters of one model: ``a[i] [in, r]`` and ``b[i] [r, out]`` for ``targets[i]``."""

    def __init__(
        self,
        targets: Sequence[str],
        shapes: Sequence[tuple[int, int]],
        cfg: LoRAConfig,
        dtype: Any = jnp.float32,
        axes: Sequence[tuple[Any, Any]] | None = None,
    ):
        self.targets = tuple(targets)
        self.config = cfg
        key = jax.random.key(cfg.seed)
        a, b = [], []
        axes = list(axes or [(None, None)] * len(shapes))
        for i, (n_in, n_out) in enumerate(shapes):
            # peft's kaiming_uniform_(a=sqrt(5)) on A: U(-1/sqrt(in), 1/sqrt(in)); B = 0.
            bound = 1.0 / math.sqrt(n_in)
            a.append(
                nnx.Param(
                    jax.random.uniform(jax.random.fold_in(key, i), (n_in, cfg.rank), jnp.float32, -bound, bound).astype(
                        dtype
                    ),
                    axes=(axes[i][0], None),
                )
            )
            b.append(nnx.Param(jnp.zeros((cfg.rank, n_out), dtype), axes=(None, axes[i][1])))
        self.a, self.b = nnx.List(a), nnx.List(b)

    def pairs(self) -> dict[str, tuple[jax.Array, jax.Array]]:
        return {t: (self.a[i][...], self.b[i][...]) for i, t in enumerate(self.targets)}


def init_lora(model: nnx.Module, cfg: LoRAConfig) -> LoRAAdapters:
    """Fresh adapters for ``model``'s Linear layers that ``cfg.target_modules`` selects (the model is untouched)."""
    params = nnx.state(model, nnx.Param)
    linears = linear_paths(params)
    targets = find_targets(params, cfg.target_modules)
    kernel_axes = {
        _path_str(p[:-1]): v.get_metadata().get("axes") or (None, None)
        for p, v in params.flat_state()
        if _path_str(p[:-1]) in targets and p[-1] == "kernel"
    }
    dtype = getattr(getattr(model, "config", None), "param_dtype", "float32")
    return LoRAAdapters(
        targets, [linears[t] for t in targets], cfg, dtype=jnp.dtype(dtype), axes=[kernel_axes[t] for t in targets]
    )


def merge_lora(params: nnx.State, adapters: LoRAAdapters) -> nnx.State:
    """A new parameter state with ``kernel + scale * a @ b`` at every target (``params`` is not modified)."""
    pairs, scale = adapters.pairs(), adapters.config.scale
    flat = []
    for path, var in params.flat_state():
        module = _path_str(path[:-1])
        if path[-1] == "kernel" and module in pairs:
            a, b = pairs[module]
            delta = scale * (a.astype(jnp.float32) @ b.astype(jnp.float32))
            var = var.replace(value=(var[...].astype(jnp.float32) + delta).astype(var[...].dtype))
        flat.append((path, var))
    return nnx.from_flat_state(flat)


def merged_model(model: nnx.Module, adapters: LoRAAdapters) -> nnx.Module:
    """A copy of ``model`` with the adapters folded into its weights (what ``to_hf`` exports)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, merge_lora(params, adapters), rest)


class _Adapted:
    """A Linear's call plus the low-rank path; lives only inside a trace (never split or checkpointed)."""

    def __init__(self, base: Any, a: jax.Array, b: jax.Array, scale: float, rate: float, key: jax.Array | None):
        self.base, self.a, self.b, self.scale, self.rate, self.key = base, a, b, scale, rate, key

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.base.dtype
        h = x.astype(dtype)
        if self.key is not None and self.rate > 0:
            keep = jax.random.bernoulli(self.key, 1.0 - self.rate, h.shape)
            h = jnp.where(keep, h / (1.0 - self.rate), 0).astype(dtype)
        low = jnp.dot(jnp.dot(h, self.a.astype(dtype)), self.b.astype(dtype))
        return self.base(x) + (self.scale * low).astype(dtype)


def _locate(model: Any, module: str) -> tuple[Any, str]:
    parent = model
    parts = module.split(".")
    for part in parts[:-1]:
        parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
    return parent, parts[-1]


def apply_lora(model: nnx.Module, adapters: LoRAAdapters, dropout_key: jax.Array | None = None) -> nnx.Module:
    """``model`` with each target Linear computing ``base(x) + scale * dropout(x) @ a @ b``.

    Meant for a model rebuilt inside a traced step (``nnx.merge``), which it edits in place:
    the adapted layers hold traced arrays and cannot be split again. ``dropout_key=None``: no
    dropout (evaluation). Unlike :func:`merge_lora` it never forms the ``[in, out]`` update.
    """
    cfg = adapters.config
    for i, (module, (a, b)) in enumerate(adapters.pairs().items()):
        parent, name = _locate(model, module)
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
        setattr(parent, name, _Adapted(getattr(parent, name), a, b, cfg.scale, cfg.dropout, key))
    return model


def batch_key(seed: int, batch: Mapping[str, jax.Array]) -> jax.Array:
    """A dropout key from the batch's token ids: the train step carries no RNG, and this keeps it pure
    (a resumed run draws the same masks on the same batches) while every batch gets its own masks."""
    ids = batch["input_ids"].astype(jnp.uint32)
    weights = jnp.arange(1, ids.size + 1, dtype=jnp.uint32).reshape(ids.shape) * jnp.uint32(2654435761)
    return jax.random.fold_in(jax.random.key(seed), jnp.sum(ids * weights))


def lora_loss_fn(base_graphdef: nnx.GraphDef, loss: ModelLoss, train: bool = True) -> Callable:
    """A :data:`jaxlab.train.step.LossFn` over the adapters, for ``fit(adapters, ..., loss_fn=...,
    loss_context=(base_params, base_rest))``: the base weights arrive as context under
    ``stop_gradient``, so they get no gradient and the optimizer never sees them."""

    def fn(params, rest, graphdef, batch):
        own_rest, (base_params, base_rest) = rest
        adapters = nnx.merge(graphdef, params, own_rest)
        model = nnx.merge(base_graphdef, jax.lax.stop_gradient(base_params), base_rest)
        key = batch_key(adapters.config.seed, batch) if train and adapters.config.dropout > 0 else None
        return loss(apply_lora(model, adapters, key), batch)

    return fn


# --- peft ---------------------------------------------------------------------------------------------------


def _hf_modules(model_config: Any) -> dict[str, str]:
    """jaxlab Linear module path -> transformers module name (``model.layers.0.self_attn.q_proj``)."""
    from jaxlab.models.hf import _hf_names

    return {
        _path_str(path[:-1]): name.removesuffix(".weight")
        for path, (name, _) in _hf_names(model_config).items()
        if path[-1] == "kernel"
    }


def peft_target_modules(targets: Sequence[str], model_config: Any) -> list[str]:
    """peft's ``target_modules``: bare names when every layer's module of that name is adapted, else full names."""
    names = _hf_modules(model_config)
    chosen = {names[t] for t in targets}
    leaves = {n.rsplit(".", 1)[-1] for n in chosen}
    if all(n in chosen for n in names.values() if n.rsplit(".", 1)[-1] in leaves):
        return sorted(leaves)
    return sorted(chosen)


def peft_state(adapters: LoRAAdapters, model_config: Any) -> dict[str, np.ndarray]:
    """The adapters under the key names peft's ``save_pretrained`` writes (``lora_A [r, in]``, ``lora_B [out, r]``)."""
    names = _hf_modules(model_config)
    out = {}
    for module, (a, b) in adapters.pairs().items():
        if module not in names:
            raise ValueError(f"lora: {module} has no transformers name, so peft cannot load it")
        pre = f"base_model.model.{names[module]}"
        out[pre + ".lora_A.weight"] = np.ascontiguousarray(np.asarray(jax.device_get(a)).T)
        out[pre + ".lora_B.weight"] = np.ascontiguousarray(np.asarray(jax.device_get(b)).T)
    return out


def save_peft(adapters: LoRAAdapters, model_config: Any, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write a folder ``peft.PeftModel.from_pretrained(base, out_dir)`` loads with the same logits."""
    from safetensors.numpy import save_file

    cfg = adapters.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(peft_state(adapters, model_config), str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_rslora": cfg.use_rslora,
        "bias": "none",
        "fan_in_fan_out": False,
        "target_modules": peft_target_modules(adapters.targets, model_config),
        "inference_mode": True,
        "base_model_name_or_path": base_model,
        "init_lora_weights": True,
        "modules_to_save": None,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out
