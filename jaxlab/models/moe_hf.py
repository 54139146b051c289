"""transformers <-> jaxlab mapping for the MoE families: Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss.

transformers 5 stores experts as fused 3-D tensors: Mixtral/Qwen keep
``experts.gate_up_proj [E, 2f, d]`` (gate rows, then up rows) and
``experts.down_proj [E, d, f]``; gpt-oss keeps ``gate_up_proj [E, d, 2f]`` with
gate/up interleaved column by column, ``down_proj [E, f, d]`` and biases.
Older checkpoints (and the hub's safetensors) keep one Linear per expert
(``experts.{j}.w1`` / ``gate_proj`` ...). ``split_experts`` turns either form
into jaxlab-layout tensors under ``...mlp.experts.w_gate``-style names, so
the generic loader in ``hf.py`` only renames (hf.py imports this module lazily); ``fuse_experts`` goes back to
the transformers 5 layout for export.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jaxlab.models.config import MOE_FAMILIES, ModelConfig, MoEConfig
from jaxlab.models.hf import UnsupportedModelError

ARCH = {
    "mixtral": "MixtralForCausalLM",
    "qwen2_moe": "Qwen2MoeForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
}
_EXPERT_PARTS = ("w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down")
# per-expert legacy Linear names (gate, up, down) for each family
_LEGACY = {
    "mixtral": ("w1", "w3", "w2"),
    "qwen2_moe": ("gate_proj", "up_proj", "down_proj"),
    "qwen3_moe": ("gate_proj", "up_proj", "down_proj"),
}


def _num_experts(hf: Mapping[str, Any]) -> int:
    n = hf.get("num_local_experts", hf.get("num_experts"))
    if not n:
        raise UnsupportedModelError(
            "num_experts/num_local_experts: expected a positive expert count, got "
            f"{n!r} (a model without experts is a dense family)"
        )
    return int(n)


def _dense_layers(hf: Mapping[str, Any], num_layers: int) -> tuple[int, ...]:
    """Qwen-MoE layers that keep a dense MLP: ``mlp_only_layers`` or off the ``decoder_sparse_step`` grid."""
    step = int(hf.get("decoder_sparse_step", 1) or 1)
    only = set(hf.get("mlp_only_layers") or [])
    bad = sorted(i for i in only if not 0 <= i < num_layers)
    if bad:
        raise UnsupportedModelError(f"mlp_only_layers: layer {bad[0]} is outside [0, {num_layers})")
    return tuple(i for i in range(num_layers) if i in only or (i + 1) % step)


def _window(hf: Mapping[str, Any], family: str, num_layers: int) -> tuple[int | None, tuple[str, ...] | None]:
    if family in ("qwen2_moe", "qwen3_moe"):
        if hf.get("use_sliding_window"):
            raise UnsupportedModelError(f"use_sliding_window=True is not supported for {family}")
        return None, None
    window = hf.get("sliding_window")
    if family == "mixtral":
        return (int(window) if window else None), None
    types = tuple(
        hf.get("layer_types") or ("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(num_layers))
    )
    return (int(window) if window else None), types


def moe_config_kwargs(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The MoE-specific ``ModelConfig`` fields of a transformers config (validated, clear errors)."""
    family = hf["model_type"]
    if family not in MOE_FAMILIES:
        raise UnsupportedModelError(f"model_type={family!r} is not an MoE family {MOE_FAMILIES}")
    if hf.get("quantization_config"):
        method = (hf["quantization_config"] or {}).get("quant_method")
        raise UnsupportedModelError(
            f"quantization_config (quant_method={method!r}) is not supported: load a dequantized (bf16/f32) checkpoint"
        )
    if float(hf.get("router_jitter_noise", 0.0) or 0.0) > 0:
        raise UnsupportedModelError(f"router_jitter_noise={hf['router_jitter_noise']} is not supported (0 is)")
    if family != "gpt_oss" and hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"hidden_act={hf.get('hidden_act')!r} is not supported (silu is)")
    num_layers = hf["num_hidden_layers"]
    window, types = _window(hf, family, num_layers)
    moe: dict[str, Any] = dict(
        num_experts=_num_experts(hf),
        num_experts_per_tok=int(hf["num_experts_per_tok"]),
        router_aux_loss_coef=float(hf.get("router_aux_loss_coef", 0.0) or 0.0),
    )
    extra: dict[str, Any] = dict(sliding_window=window, layer_types=types)
    if family == "mixtral":
        moe.update(intermediate_size=hf["intermediate_size"], norm_topk_prob=True)
    elif family in ("qwen2_moe", "qwen3_moe"):
        moe.update(
            intermediate_size=hf["moe_intermediate_size"],
            norm_topk_prob=bool(hf.get("norm_topk_prob")),
            dense_layers=_dense_layers(hf, num_layers),
        )
        if family == "qwen2_moe":
            moe.update(shared_expert_intermediate_size=hf["shared_expert_intermediate_size"], shared_expert_gate=True)
            extra["attention_bias"] = bool(hf.get("qkv_bias", True))
        else:
            extra.update(qk_norm=True, attention_bias=bool(hf.get("attention_bias", False)))
    else:
        bias = bool(hf.get("attention_bias", True))
        moe.update(
            intermediate_size=hf["intermediate_size"],
            norm_topk_prob=True,
            router_bias=True,
            expert_bias=True,
            activation="clamped_swiglu",
            swiglu_alpha=float(hf.get("swiglu_alpha", 1.702)),
            swiglu_limit=float(hf.get("swiglu_limit", 7.0)),
        )
        extra.update(attention_bias=bias, attention_out_bias=bias, attention_sinks=True)
    extra["moe"] = MoEConfig(**moe)
    return extra


def moe_config_to_hf(cfg: ModelConfig, out: dict[str, Any]) -> dict[str, Any]:
    """Add/override the MoE fields of a transformers config dict built by ``hf.config_to_hf``."""
    moe, family = cfg.moe, cfg.family
    out.update(
        num_experts_per_tok=moe.num_experts_per_tok,
        router_aux_loss_coef=moe.router_aux_loss_coef,
        output_router_logits=False,
    )
    if moe.router_z_loss_coef:
        raise UnsupportedModelError(
            "to_hf: moe.router_z_loss_coef has no transformers equivalent; set it to 0 to export"
        )
    expected = dict(
        mixtral=dict(
            norm_topk_prob=True,
            router_bias=False,
            expert_bias=False,
            activation="swiglu",
            shared_expert_intermediate_size=0,
            dense_layers=(),
        ),
        qwen3_moe=dict(router_bias=False, expert_bias=False, activation="swiglu", shared_expert_intermediate_size=0),
        qwen2_moe=dict(router_bias=False, expert_bias=False, activation="swiglu", shared_expert_gate=True),
        gpt_oss=dict(
            norm_topk_prob=True,
            router_bias=True,
            expert_bias=True,
            activation="clamped_swiglu",
            shared_expert_intermediate_size=0,
            dense_layers=(),
        ),
    )
    for field, value in expected[family].items():
        if getattr(moe, field) != value:
            raise UnsupportedModelError(f"to_hf: {family} needs moe.{field}={value!r}, got {getattr(moe, field)!r}")
    if family == "qwen2_moe" and not moe.shared_expert_intermediate_size:
        raise UnsupportedModelError("to_hf: qwen2_moe needs a shared expert (moe.shared_expert_intermediate_size > 0)")
    if family == "mixtral":
        out.update(
            num_local_experts=moe.num_experts,
            intermediate_size=moe.intermediate_size,
            sliding_window=cfg.sliding_window,
        )
    elif family in ("qwen2_moe", "qwen3_moe"):
        out.update(
            num_experts=moe.num_experts,
            moe_intermediate_size=moe.intermediate_size,
            norm_topk_prob=moe.norm_topk_prob,
            mlp_only_layers=list(moe.dense_layers),
            decoder_sparse_step=1,
            use_sliding_window=False,
        )
        if family == "qwen2_moe":
            out.update(shared_expert_intermediate_size=moe.shared_expert_intermediate_size, qkv_bias=cfg.attention_bias)
            out.pop("attention_bias", None)
    else:
        out.update(
            num_local_experts=moe.num_experts,
            intermediate_size=moe.intermediate_size,
            swiglu_alpha=moe.swiglu_alpha,
            swiglu_limit=moe.swiglu_limit,
            sliding_window=cfg.sliding_window,
            layer_types=list(cfg.layer_types or ["full_attention"] * cfg.num_layers),
        )
    return out


def _router_name(cfg: ModelConfig) -> str:
    return "mlp.router" if cfg.family == "gpt_oss" else "mlp.gate"


def moe_layer_names(cfg: ModelConfig, i: int) -> dict[tuple, tuple[str, bool]]:
    """jaxlab param path -> (HF name, transpose?) for MoE layer ``i`` (experts under split names)."""
    pre, mlp = f"model.layers.{i}.", ("layers", i, "mlp")
    router = pre + _router_name(cfg)
    names = {mlp + ("router", "kernel"): (router + ".weight", True)}
    if cfg.moe.router_bias:
        names[mlp + ("router", "bias")] = (router + ".bias", False)
    parts = _EXPERT_PARTS if cfg.moe.expert_bias else _EXPERT_PARTS[:3]
    for part in parts:
        names[mlp + ("experts", part)] = (pre + "mlp.experts." + part, False)
    if cfg.moe.shared_expert_intermediate_size:
        for p in ("gate_proj", "up_proj", "down_proj"):
            names[mlp + ("shared_expert", p, "kernel")] = (pre + f"mlp.shared_expert.{p}.weight", True)
        if cfg.moe.shared_expert_gate:
            names[mlp + ("shared_expert", "gate", "kernel")] = (pre + "mlp.shared_expert_gate.weight", True)
    return names


def attention_extra_names(cfg: ModelConfig, i: int) -> dict[tuple, tuple[str, bool]]:
    """gpt-oss attention parameters beyond the Llama set: sinks and the o_proj bias."""
    pre, attn = f"model.layers.{i}.self_attn.", ("layers", i, "attn")
    names = {}
    if cfg.attention_sinks:
        names[attn + ("sinks",)] = (pre + "sinks", False)
    if cfg.attention_out_bias:
        names[attn + ("o_proj", "bias")] = (pre + "o_proj.bias", False)
    return names


def _stack_legacy(cfg: ModelConfig, w: dict[str, np.ndarray], pre: str) -> bool:
    """Per-expert Linear checkpoints: stack ``experts.{j}.{gate,up,down}`` into split tensors."""
    legacy = _LEGACY.get(cfg.family)
    if legacy is None or pre + "mlp.experts.0." + legacy[0] + ".weight" not in w:
        return False
    for part, name in zip(("w_gate", "w_up", "w_down"), legacy):
        keys = [pre + f"mlp.experts.{j}.{name}.weight" for j in range(cfg.moe.num_experts)]
        missing = [k for k in keys if k not in w]
        if missing:
            raise UnsupportedModelError(f"checkpoint is missing tensor {missing[0]!r}")
        w[pre + "mlp.experts." + part] = np.stack([np.asarray(w.pop(k)).T for k in keys])
    return True


def split_experts(cfg: ModelConfig, weights: Mapping[str, Any]) -> dict[str, Any]:
    """HF expert tensors (fused or per-expert) -> jaxlab layout under ``mlp.experts.<part>`` names."""
    w = dict(weights)
    for i, is_moe in enumerate(cfg.layer_is_moe):
        if not is_moe:
            continue
        pre = f"model.layers.{i}."
        legacy_pre = pre + "block_sparse_moe."  # Mixtral's original module name
        for k in [k for k in w if k.startswith(legacy_pre)]:
            w[pre + "mlp." + k[len(legacy_pre) :]] = w.pop(k)
        if _stack_legacy(cfg, w, pre):
            continue
        fused, down = pre + "mlp.experts.gate_up_proj", pre + "mlp.experts.down_proj"
        if fused not in w or down not in w:
            raise UnsupportedModelError(f"checkpoint is missing tensor {fused if fused not in w else down!r}")
        gate_up, down_w = np.asarray(w.pop(fused)), np.asarray(w.pop(down))
        f = cfg.moe.intermediate_size
        if cfg.family == "gpt_oss":  # [E, d, 2f], gate/up interleaved; down [E, f, d]
            w[pre + "mlp.experts.w_gate"], w[pre + "mlp.experts.w_up"] = gate_up[..., ::2], gate_up[..., 1::2]
            w[pre + "mlp.experts.w_down"] = down_w
            bias = np.asarray(w.pop(fused + "_bias"))
            w[pre + "mlp.experts.b_gate"], w[pre + "mlp.experts.b_up"] = bias[..., ::2], bias[..., 1::2]
            w[pre + "mlp.experts.b_down"] = np.asarray(w.pop(down + "_bias"))
        else:  # [E, 2f, d] (gate rows then up rows); down [E, d, f]
            w[pre + "mlp.experts.w_gate"] = np.swapaxes(gate_up[:, :f], 1, 2)
            w[pre + "mlp.experts.w_up"] = np.swapaxes(gate_up[:, f:], 1, 2)
            w[pre + "mlp.experts.w_down"] = np.swapaxes(down_w, 1, 2)
    return w


def fuse_experts(cfg: ModelConfig, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of ``split_experts``: jaxlab expert tensors -> transformers 5 fused tensors."""
    w = dict(weights)
    for i, is_moe in enumerate(cfg.layer_is_moe):
        if not is_moe:
            continue
        pre = f"model.layers.{i}.mlp.experts."
        gate, up, down = (w.pop(pre + p) for p in ("w_gate", "w_up", "w_down"))
        if cfg.family == "gpt_oss":
            w[pre + "gate_up_proj"] = np.stack([gate, up], axis=-1).reshape(gate.shape[:-1] + (-1,))
            w[pre + "down_proj"] = down
            b_gate, b_up = w.pop(pre + "b_gate"), w.pop(pre + "b_up")
            w[pre + "gate_up_proj_bias"] = np.stack([b_gate, b_up], axis=-1).reshape(b_gate.shape[:-1] + (-1,))
            w[pre + "down_proj_bias"] = w.pop(pre + "b_down")
        else:
            w[pre + "gate_up_proj"] = np.swapaxes(np.concatenate([gate, up], axis=-1), 1, 2)
            w[pre + "down_proj"] = np.swapaxes(down, 1, 2)
    return {k: np.ascontiguousarray(v) for k, v in w.items()}
