"""Decoder LMs (dense Llama / Qwen2 / Qwen3; MoE Mixtral / Qwen2-MoE / Qwen3-MoE / gpt-oss),
transformers import/export and the real SmolLM2."""

from jaxlab.models.config import ModelConfig, MoEConfig, tiny_config
from jaxlab.models.decoder import DecoderLM, KVCache, init_model
from jaxlab.models.hf import UnsupportedModelError, from_hf, to_hf
from jaxlab.models.moe import MoEBlock, load_balancing_loss, router_z_loss

__all__ = [
    "ModelConfig",
    "MoEConfig",
    "tiny_config",
    "DecoderLM",
    "KVCache",
    "init_model",
    "from_hf",
    "to_hf",
    "UnsupportedModelError",
    "MoEBlock",
    "load_balancing_loss",
    "router_z_loss",
    "load_smollm2",
]


def __getattr__(name):  # lazy: the GGUF path pulls in transformers
    if name in ("load_smollm2", "smollm2_gguf_path"):
        from jaxlab.models import smollm2

        return getattr(smollm2, name)
    raise AttributeError(name)
