"""Decoder LMs (Llama / Qwen2 / Qwen3), transformers import/export and the real SmolLM2."""
from jaxlab.models.config import ModelConfig, tiny_config
from jaxlab.models.decoder import DecoderLM, KVCache, init_model
from jaxlab.models.hf import UnsupportedModelError, from_hf, to_hf

__all__ = ["ModelConfig", "tiny_config", "DecoderLM", "KVCache", "init_model", "from_hf", "to_hf",
           "UnsupportedModelError", "load_smollm2"]


def __getattr__(name):  # lazy: the GGUF path pulls in transformers
    if name in ("load_smollm2", "smollm2_gguf_path"):
        from jaxlab.models import smollm2

        return getattr(smollm2, name)
    raise AttributeError(name)
