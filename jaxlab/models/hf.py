"""transformers checkpoints in and out: config mapping and weight renaming.

``from_hf`` accepts a transformers model object, a local folder with
``config.json`` + safetensors, or a (config dict, weights dict) pair;
``to_hf`` writes a folder ``AutoModelForCausalLM.from_pretrained`` loads.
Logits parity with transformers is what the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.models.config import MOE_FAMILIES, ModelConfig, dtype_of
from jaxlab.models.decoder import DecoderLM

_ARCH = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen2_moe": "Qwen2MoeForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
}  # the MoE families' fields live in moe_hf.py


class UnsupportedModelError(ValueError):
    """The checkpoint uses an architecture or option jaxlab does not implement."""


def _rope(hf: Mapping[str, Any], allowed: tuple[str, ...] = ("llama3", "linear", "yarn")) -> tuple[float, dict | None]:
    """Read rope theta/scaling from either transformers 4 or 5 config layouts."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = {**legacy, **{k: v for k, v in params.items() if k != "rope_theta"}}
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    kind = scaling.get("rope_type", "default")
    if kind == "default":
        return theta, None
    if kind not in allowed:
        raise UnsupportedModelError(f"rope_scaling.rope_type={kind!r} is not supported ({', '.join(allowed)} are)")
    if kind in ("llama3", "yarn"):  # transformers fills this in the same way (standardize_rope_params)
        scaling.setdefault("original_max_position_embeddings", int(hf.get("max_position_embeddings", 2048)))
    return theta, scaling


def _dense_window(hf: Mapping[str, Any], family: str) -> tuple[int | None, tuple[str, ...] | None]:
    """``(sliding_window, layer_types)`` of a dense family, read the way transformers reads it.

    Mistral slides every layer when ``sliding_window`` is set; Qwen2/Qwen3 only with
    ``use_sliding_window``, on the layers ``layer_types`` marks (or, in older configs,
    those from ``max_window_layers`` on). Llama has no sliding window in transformers.
    """
    window = hf.get("sliding_window")
    if family == "mistral":
        return (int(window) if window else None), None
    if family not in ("qwen2", "qwen3") or not hf.get("use_sliding_window") or not window:
        return None, None
    n = int(hf["num_hidden_layers"])
    types = hf.get("layer_types") or [
        "sliding_attention" if i >= int(hf.get("max_window_layers", n)) else "full_attention" for i in range(n)
    ]
    if len(types) != n:
        raise UnsupportedModelError(f"layer_types: expected {n} entries (num_hidden_layers), got {len(types)}")
    if "sliding_attention" not in types:
        return None, None
    return int(window), tuple(types)


def config_from_hf(hf: Mapping[str, Any], dtype: str = "float32", param_dtype: str | None = None) -> ModelConfig:
    """Translate a transformers config (as a dict) into a ``ModelConfig``."""
    family = hf.get("model_type")
    if family not in _ARCH:
        raise UnsupportedModelError(f"model_type={family!r} is not supported; jaxlab loads {sorted(_ARCH)}")
    if family in MOE_FAMILIES:
        from jaxlab.models.moe_hf import moe_config_kwargs

        theta, scaling = _rope(hf)
        heads = hf["num_attention_heads"]
        return ModelConfig(
            family=family,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rope_theta=theta,
            rope_scaling=scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            dtype=dtype,
            param_dtype=param_dtype or dtype,
            **moe_config_kwargs(hf),
        )
    if hf.get("mlp_bias"):
        raise UnsupportedModelError("mlp_bias=True is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"hidden_act={hf.get('hidden_act')!r} is not supported (silu is)")
    theta, scaling = _rope(hf)
    window, types = _dense_window(hf, family)
    heads = hf["num_attention_heads"]
    return ModelConfig(
        family=family,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        rope_theta=theta,
        rope_scaling=scaling,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=True if family == "qwen2" else bool(hf.get("attention_bias", False)),
        qk_norm=family == "qwen3",
        max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
        sliding_window=window,
        layer_types=types,
        dtype=dtype,
        param_dtype=param_dtype or dtype,
    )


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    if not cfg.is_uniform:
        raise UnsupportedModelError(
            "to_hf: this model has non-uniform per-layer widths, which transformers cannot load; "
            "it stays loadable in jaxlab (save it with jaxlab.train.checkpoint) — prune the same count per layer "
            "to export"
        )
    out = {
        "architectures": [_ARCH[cfg.family]],
        "model_type": cfg.family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.layer_intermediate[0],
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.layer_heads[0],
        "num_key_value_heads": cfg.layer_kv_heads[0],
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": cfg.max_position_embeddings,
        "torch_dtype": cfg.param_dtype,
        "attention_bias": cfg.attention_bias,
        "use_cache": True,
    }
    if cfg.rope_scaling:
        out["rope_scaling"] = dict(cfg.rope_scaling)
    if cfg.moe is None:
        out.update(_dense_window_to_hf(cfg))
    if cfg.moe is not None:
        from jaxlab.models.moe_hf import moe_config_to_hf

        out = moe_config_to_hf(cfg, out)
    return out


def _dense_window_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """The sliding-window fields of a dense family's transformers config (the inverse of ``_dense_window``)."""
    windows = cfg.layer_window
    if cfg.family == "mistral":
        if len(set(windows)) != 1:
            raise UnsupportedModelError(
                f"to_hf: Mistral slides every layer or none; this model mixes windows {windows}"
            )
        return {"sliding_window": windows[0]}
    if cfg.family in ("qwen2", "qwen3"):
        if not any(windows):
            return {"use_sliding_window": False, "sliding_window": None}
        sliding = [w is not None for w in windows]
        first = sliding.index(True)
        return {
            "use_sliding_window": True,
            "sliding_window": cfg.sliding_window,
            "max_window_layers": first if all(sliding[first:]) else cfg.num_layers,
            "layer_types": ["sliding_attention" if s else "full_attention" for s in sliding],
        }
    if any(windows):
        raise UnsupportedModelError(f"to_hf: transformers' {cfg.family} has no sliding-window attention")
    return {}


def _hf_names(cfg: ModelConfig) -> dict[tuple, tuple[str, bool]]:
    """jaxlab param path -> (HF tensor name, transpose?)."""
    names: dict[tuple, tuple[str, bool]] = {
        ("embed", "embedding"): ("model.embed_tokens.weight", False),
        ("final_norm", "scale"): ("model.norm.weight", False),
    }
    if not cfg.tie_embeddings:
        names[("lm_head", "kernel")] = ("lm_head.weight", True)
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        names[("layers", i, "attn_norm", "scale")] = (pre + "input_layernorm.weight", False)
        names[("layers", i, "mlp_norm", "scale")] = (pre + "post_attention_layernorm.weight", False)
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            names[("layers", i, "attn", p, "kernel")] = (pre + f"self_attn.{p}.weight", True)
            if cfg.attention_bias and p != "o_proj":
                names[("layers", i, "attn", p, "bias")] = (pre + f"self_attn.{p}.bias", False)
        if cfg.qk_norm:
            names[("layers", i, "attn", "q_norm", "scale")] = (pre + "self_attn.q_norm.weight", False)
            names[("layers", i, "attn", "k_norm", "scale")] = (pre + "self_attn.k_norm.weight", False)
        if cfg.moe is not None or cfg.attention_sinks or cfg.attention_out_bias:
            from jaxlab.models.moe_hf import attention_extra_names, moe_layer_names

            names.update(attention_extra_names(cfg, i))
            if cfg.layer_is_moe[i]:
                names.update(moe_layer_names(cfg, i))
                continue
        for p in ("gate_proj", "up_proj", "down_proj"):
            names[("layers", i, "mlp", p, "kernel")] = (pre + f"mlp.{p}.weight", True)
    return names


def model_from_weights(cfg: ModelConfig, weights: Mapping[str, Any]) -> DecoderLM:
    """Build a ``DecoderLM`` from HF-named arrays (numpy or jax), without a random init."""
    abstract = nnx.eval_shape(lambda: DecoderLM(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    names = _hf_names(cfg)
    if cfg.moe is not None:
        from jaxlab.models.moe_hf import split_experts

        weights = split_experts(cfg, weights)
    pdt = dtype_of(cfg.param_dtype)
    flat = dict(state.flat_state())
    for path, var in flat.items():
        if path not in names:
            raise UnsupportedModelError(f"no transformers name for parameter {'.'.join(map(str, path))}")
        name, transpose = names[path]
        if name not in weights:
            raise UnsupportedModelError(f"checkpoint is missing tensor {name!r}")
        arr = np.asarray(weights[name])
        arr = arr.T if transpose else arr
        if arr.shape != var.shape:
            raise UnsupportedModelError(f"tensor {name!r}: expected shape {var.shape}, got {arr.shape}")
        var.set_value(jnp.asarray(arr, pdt))
    extra = set(weights) - {n for n, _ in names.values()} - {"lm_head.weight"}
    extra = {n for n in extra if "rotary_emb" not in n}
    if extra:
        raise UnsupportedModelError(f"checkpoint has tensors jaxlab does not use, e.g. {sorted(extra)[0]!r}")
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _load_folder(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors import safe_open

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"from_hf: {str(path)!r} has no config.json")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"from_hf: {str(path)!r} has no *.safetensors weights")
    weights: dict[str, np.ndarray] = {}
    for f in files:
        with safe_open(str(f), framework="flax") as fh:
            for k in fh.keys():
                weights[k] = np.asarray(fh.get_tensor(k).astype(jnp.float32))
    return json.loads(cfg_file.read_text()), weights


def _torch_state(model: Any) -> tuple[dict, dict[str, np.ndarray]]:
    hf_cfg = model.config.to_dict()
    weights = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    return hf_cfg, weights


def read_hf_source(source: Any, caller: str = "from_hf") -> tuple[dict, dict[str, Any]]:
    """``(config dict, HF-named weights)`` of a transformers model object, a local folder or a pair."""
    if isinstance(source, (str, Path)):
        return _load_folder(Path(source))
    if isinstance(source, tuple) and len(source) == 2:
        return dict(source[0]), dict(source[1])
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        hf_cfg, weights = _torch_state(source)
        hf_cfg["architectures"] = hf_cfg.get("architectures") or [type(source).__name__]  # unset on from_config
        return hf_cfg, weights
    raise TypeError(
        f"{caller}: expected a transformers model, a folder path or (config, weights), got {type(source).__name__}"
    )


def from_hf(source: Any, dtype: str = "float32", param_dtype: str | None = None) -> DecoderLM:
    """Load a transformers model (object or local folder) as a jaxlab ``DecoderLM``."""
    hf_cfg, weights = read_hf_source(source)
    cfg = config_from_hf(hf_cfg, dtype=dtype, param_dtype=param_dtype)
    return model_from_weights(cfg, weights)


def hf_weights(model: DecoderLM) -> dict[str, np.ndarray]:
    """The model's parameters under transformers names and layouts."""
    names = _hf_names(model.config)
    out = {}
    for path, var in nnx.state(model, nnx.Param).flat_state():
        name, transpose = names[path]
        arr = np.asarray(jax.device_get(var[...]))
        out[name] = np.ascontiguousarray(arr.T if transpose else arr)
    if model.config.moe is not None:
        from jaxlab.models.moe_hf import fuse_experts

        out = fuse_experts(model.config, out)
    return out


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """``bos/eos/pad_token_id`` of a Hugging Face tokenizer (those it has)."""
    ids = {}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            ids[key] = int(value)
    return ids


def generation_config(tokenizer: Any) -> dict[str, Any]:
    """A ``generation_config.json`` under which a default transformers ``generate()`` decodes as
    :func:`jaxlab.generate.generate` does by default: greedy, stopping at the tokenizer's EOS
    (``<|im_end|>`` for a chat model such as SmolLM2-Instruct)."""
    ids = special_token_ids(tokenizer)
    if "eos_token_id" not in ids:
        raise ValueError(
            "to_hf: the tokenizer has no eos_token_id, so generate() would never stop; set tokenizer.eos_token first"
        )
    ids.setdefault("pad_token_id", ids["eos_token_id"])
    return {**ids, "do_sample": False}


def to_hf(model: DecoderLM, out_dir: str | Path, tokenizer: Any = None) -> Path:
    """Write a folder ``AutoModelForCausalLM.from_pretrained`` loads with the same logits.

    With ``tokenizer`` (a Hugging Face tokenizer) the folder also holds its files, so
    ``AutoTokenizer.from_pretrained`` loads it, the config names its BOS/EOS/pad ids, and a
    ``generation_config.json`` makes a plain ``generate()`` stop at EOS with the tokens jaxlab's
    greedy ``generate`` gives. Without one, transformers would not know where a turn ends.
    """
    from safetensors.flax import save_file

    out = Path(out_dir)
    hf_cfg = config_to_hf(model.config)
    if tokenizer is not None:
        gen = generation_config(tokenizer)
        hf_cfg.update({k: v for k, v in gen.items() if k.endswith("_token_id")})
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: jnp.asarray(v) for k, v in hf_weights(model).items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
        (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return out
