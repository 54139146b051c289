"""GGUF files in without torch or llama.cpp: the ``gguf`` package reads and dequantises with numpy.

transformers' own GGUF path needs torch (its reader imports it), which would make
torch a run-time dependency of every SmolLM2 job. Here the tensors are dequantised
by ``gguf.quants.dequantize`` (numpy), renamed from llama.cpp's names to
transformers' ones, and the Q/K rows un-permuted: llama.cpp's converter reorders the
rows of Llama's ``q_proj``/``k_proj`` from transformers' rotate-half RoPE layout to
its interleaved one (Qwen2 it leaves alone), so we apply the inverse. The
tokenizer is built from the file's vocabulary and merges by transformers' GGUF
tokenizer builders (which need no torch; only transformers' file reader does).
The result is what transformers' GGUF loader gives (the tests compare logits and
token ids against it), written as a plain transformers folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# llama.cpp tensor names -> transformers names (the dense families jaxlab loads from GGUF)
_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_ARCH = {"llama": ("llama", "LlamaForCausalLM"), "qwen2": ("qwen2", "Qwen2ForCausalLM")}


def _reader(path: str | Path) -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is a main dependency
        raise ImportError("reading a GGUF needs the 'gguf' package (a jaxlab dependency): pip install gguf") from exc
    return gguf.GGUFReader(str(path))


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def gguf_config(reader: Any) -> dict[str, Any]:
    """The transformers ``config.json`` of the model in a GGUF (Llama and Qwen2)."""
    arch = _field(reader, "general.architecture")
    if arch not in _ARCH:
        raise ValueError(f"GGUF: general.architecture={arch!r} is not supported; jaxlab reads {sorted(_ARCH)}")
    model_type, class_name = _ARCH[arch]
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    names = {t.name for t in reader.tensors}
    cfg = {
        "architectures": [class_name],
        "model_type": model_type,
        "hidden_act": "silu",
        "vocab_size": int(_field(reader, f"{arch}.vocab_size", len(_field(reader, "tokenizer.ggml.tokens")))),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, f"{arch}.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        "head_dim": int(_field(reader, f"{arch}.rope.dimension_count", hidden // heads)),
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length")),
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": "blk.0.attn_q.bias" in names,
    }
    for key, name in (
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("pad_token_id", "padding_token_id"),
        ("unk_token_id", "unknown_token_id"),
    ):
        value = _field(reader, f"tokenizer.ggml.{name}")
        if value is not None:
            cfg[key] = int(value)
    return cfg


def unpermute_qk(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order: its converter stores transformers' rows as
    ``w.reshape(h, 2, d/2, in).swapaxes(1, 2)`` (interleaved RoPE pairs); the inverse is
    ``reshape(h, d/2, 2, in).swapaxes(1, 2)``, what transformers' GGUF loader applies too."""
    dim = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, dim, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _hf_name(name: str) -> str:
    if name in _GLOBAL:
        return _GLOBAL[name]
    parts = name.split(".")
    if parts[0] != "blk" or len(parts) != 4 or parts[2] not in _BLOCK:
        raise ValueError(f"GGUF: tensor {name!r} has no transformers name jaxlab knows")
    return f"model.layers.{parts[1]}.{_BLOCK[parts[2]]}.{parts[3]}"


def gguf_weights(reader: Any, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every tensor dequantised to float32 under its transformers name and layout (``[out, in]``)."""
    from gguf.quants import dequantize

    llama = config["model_type"] == "llama"
    out = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name)
        arr = np.asarray(dequantize(tensor.data, tensor.tensor_type), np.float32)
        want = tuple(int(d) for d in reversed(tensor.shape))
        arr = arr.reshape(want)
        if llama and name.endswith(("q_proj.weight", "q_proj.bias")):
            arr = unpermute_qk(arr, config["num_attention_heads"])
        elif llama and name.endswith(("k_proj.weight", "k_proj.bias")):
            arr = unpermute_qk(arr, config["num_key_value_heads"])
        out[name] = np.ascontiguousarray(arr)
    return out


def gguf_tokenizer(reader: Any) -> Any:
    """The tokenizer a GGUF describes, built by transformers' own GGUF tokenizer builders (torch-free)
    from metadata read here; transformers' entry point (``AutoTokenizer(..., gguf_file=)``) would read
    the file through its torch-importing reader, so only the reading is replaced."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

    wanted = {f"tokenizer.{key}" for renames in GGUF_TOKENIZER_MAPPING.values() for key in renames}
    metadata = {key: _field(reader, key) for key in reader.fields if key in wanted}
    grouped = {
        group: {name: metadata[f"tokenizer.{key}"] for key, name in renames.items() if f"tokenizer.{key}" in metadata}
        for group, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    tokenizer_dict, config = grouped["tokenizer"], grouped["tokenizer_config"]
    if "tokens" not in tokenizer_dict:
        raise ValueError("GGUF: the file has no tokenizer.ggml.tokens (no vocabulary to build a tokenizer from)")
    if tokenizer_dict.get("tokenizer_type") == "llama":  # as transformers: sentencepiece files add BOS by default
        config.setdefault("add_bos_token", True)
    tokens = tokenizer_dict["tokens"]
    for name, key in (
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ):
        value = _field(reader, f"tokenizer.ggml.{key}")
        config[name] = tokens[int(value)] if value is not None else None
    backend, extra = convert_gguf_tokenizer(_field(reader, "general.architecture"), tokenizer_dict)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **config, **extra)


def gguf_to_folder(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write the GGUF as a transformers folder (config.json, model.safetensors, tokenizer files); no torch."""
    from safetensors.numpy import save_file

    reader = _reader(gguf_path)
    config = gguf_config(reader)
    weights = gguf_weights(reader, config)
    if config["tie_word_embeddings"]:
        weights.pop("lm_head.weight", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    del weights
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gguf_tokenizer(reader).save_pretrained(str(out))
    return out
