"""Reward models: the decoder trunk with a score head, as transformers and the Qwen PRMs build them.

Two heads cover the checkpoints MAS-ProVe compares:

* ``linear``: one bias-free ``Linear(hidden, num_labels)`` on the final normed
  hidden states (transformers' ``LlamaForSequenceClassification`` /
  ``Qwen2ForSequenceClassification``; Skywork-Reward-V2 is such a Llama with
  ``num_labels=1``). The sequence's score is the head's output at its last real
  token (:func:`sequence_scores`).
* ``mlp``: ``Linear(h, h) -> ReLU -> Linear(h, num_labels)`` with biases
  (``Qwen2ForProcessRewardModel``, i.e. Qwen2.5-Math-PRM, ``num_labels=2``;
  the Qwen2-Math RM has the same head with one label). A PRM's step reward is
  P(label 1) at every step-separator token (:func:`step_probabilities`).

The trunk is a plain :class:`~jaxlab.models.decoder.DecoderLM` built with tied
embeddings so that it owns no ``lm_head`` (classification checkpoints ship
none); its forward is reused through ``collect=True``, whose unused logits XLA
drops under ``jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.models.config import ModelConfig, dtype_of
from jaxlab.models.decoder import DecoderLM
from jaxlab.models.hf import UnsupportedModelError, config_from_hf, model_from_weights, read_hf_source
from jaxlab.models.layers import Linear

HEADS = ("linear", "mlp")
ARCHITECTURE_HEADS = {
    "LlamaForSequenceClassification": "linear",
    "Qwen2ForSequenceClassification": "linear",
    "Qwen3ForSequenceClassification": "linear",
    "MistralForSequenceClassification": "linear",
    "Qwen2ForProcessRewardModel": "mlp",
    "Qwen2ForRewardModel": "mlp",
}


class ScoreHead(nnx.Module):
    """``linear`` (one bias-free projection) or ``mlp`` (Linear -> ReLU -> Linear, with biases)."""

    def __init__(self, hidden: int, num_labels: int, kind: str, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        if kind not in HEADS:
            raise ValueError(f"head: expected one of {list(HEADS)}, got {kind!r}")
        if num_labels < 1:
            raise ValueError(f"num_labels: expected >= 1, got {num_labels}")
        self.kind = kind
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if kind == "linear":
            self.out = Linear(hidden, num_labels, ("embed", None), **kw)
            self.hidden = None
        else:
            self.hidden = Linear(hidden, hidden, ("embed", "mlp"), use_bias=True, **kw)
            self.out = Linear(hidden, num_labels, ("mlp", None), use_bias=True, **kw)

    def __call__(self, h: jax.Array) -> jax.Array:
        if self.hidden is not None:
            h = jax.nn.relu(self.hidden(h))
        return self.out(h)


class RewardModel(nnx.Module):
    """``model(input_ids, attention_mask) -> [B, S, num_labels]`` float32 scores at every position."""

    def __init__(self, cfg: ModelConfig, num_labels: int = 1, head: str = "linear", *, rngs: nnx.Rngs):
        self.trunk = DecoderLM(dataclasses.replace(cfg, tie_embeddings=True), rngs=rngs)
        self.head = ScoreHead(
            cfg.hidden_size,
            num_labels,
            head,
            dtype=dtype_of(cfg.dtype),
            param_dtype=dtype_of(cfg.param_dtype),
            rngs=rngs,
        )
        self.num_labels = num_labels

    def hidden_states(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """The final normed hidden states ``[B, S, hidden]`` (what transformers' score head reads)."""
        _, inter = self.trunk(input_ids, attention_mask=attention_mask, collect=True)
        return self.trunk.final_norm(inter[-1]["block_out"])

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        return self.head(self.hidden_states(input_ids, attention_mask)).astype(jnp.float32)


def last_real_index(attention_mask: jax.Array) -> jax.Array:
    """Index of each row's last real token (transformers pools there; any padding side works)."""
    s = attention_mask.shape[1]
    return jnp.max(jnp.where(attention_mask.astype(bool), jnp.arange(s)[None], -1), axis=1)


def sequence_scores(scores: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """``[B, S, L]`` per-position scores -> ``[B, L]`` at each row's last real token."""
    idx = jnp.maximum(last_real_index(attention_mask), 0)  # an all-padding row reads position 0
    return jnp.take_along_axis(scores, idx[:, None, None], axis=1)[:, 0]


def step_probabilities(scores: jax.Array, input_ids: jax.Array, step_token_id: int) -> tuple[jax.Array, jax.Array]:
    """PRM step rewards: P(label 1) of the 2-way softmax at every position, and where the separators are."""
    if scores.shape[-1] != 2:
        raise ValueError(f"step_probabilities: a process reward model has 2 labels, this one {scores.shape[-1]}")
    return jax.nn.softmax(scores, axis=-1)[..., 1], input_ids == step_token_id


def _num_labels(hf: Mapping[str, Any], head: str) -> int:
    if hf.get("num_labels"):
        return int(hf["num_labels"])
    if hf.get("id2label"):
        return len(hf["id2label"])
    return 2 if head == "mlp" else 1


def head_kind(hf: Mapping[str, Any]) -> str:
    """The score head a transformers config's ``architectures`` names."""
    archs = list(hf.get("architectures") or [])
    kinds = {ARCHITECTURE_HEADS[a] for a in archs if a in ARCHITECTURE_HEADS}
    if len(kinds) != 1:
        raise UnsupportedModelError(
            f"architectures={archs}: not a reward model jaxlab loads ({sorted(ARCHITECTURE_HEADS)} are)"
        )
    return kinds.pop()


def _head_names(head: str) -> dict[tuple, str]:
    if head == "linear":
        return {("out", "kernel"): "score.weight"}
    return {
        ("hidden", "kernel"): "score.0.weight",
        ("hidden", "bias"): "score.0.bias",
        ("out", "kernel"): "score.2.weight",
        ("out", "bias"): "score.2.bias",
    }


def reward_model_from_weights(
    hf: Mapping[str, Any], weights: Mapping[str, Any], dtype: str = "float32", param_dtype: str | None = None
) -> RewardModel:
    """A :class:`RewardModel` from a transformers config dict and HF-named arrays."""
    head = head_kind(hf)
    cfg = config_from_hf(hf, dtype=dtype, param_dtype=param_dtype)
    trunk_weights = {k: v for k, v in weights.items() if not k.startswith("score.")}
    trunk = model_from_weights(dataclasses.replace(cfg, tie_embeddings=True), trunk_weights)
    model = nnx.eval_shape(lambda: RewardModel(cfg, _num_labels(hf, head), head, rngs=nnx.Rngs(0)))
    model.trunk = trunk
    pdt = dtype_of(cfg.param_dtype)
    names = _head_names(head)
    for path, var in nnx.state(model.head, nnx.Param).flat_state():
        name = names[path]
        if name not in weights:
            raise UnsupportedModelError(f"checkpoint is missing tensor {name!r}")
        arr = np.asarray(weights[name])
        arr = arr.T if path[-1] == "kernel" else arr
        if arr.shape != var.shape:
            raise UnsupportedModelError(f"tensor {name!r}: expected shape {var.shape}, got {arr.shape}")
        var.set_value(jnp.asarray(arr, pdt))
    extra = {k for k in weights if k.startswith("score.")} - set(names.values())
    if extra:
        raise UnsupportedModelError(f"checkpoint has score tensors jaxlab does not use, e.g. {sorted(extra)[0]!r}")
    return model


def reward_model_from_hf(source: Any, dtype: str = "float32", param_dtype: str | None = None) -> RewardModel:
    """Load a transformers reward model (object, local folder, or (config, weights)) as a :class:`RewardModel`."""
    hf_cfg, weights = read_hf_source(source, "reward_model_from_hf")
    return reward_model_from_weights(hf_cfg, weights, dtype=dtype, param_dtype=param_dtype)
