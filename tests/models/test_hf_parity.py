"""Logits parity with transformers (torch, CPU, float32) on tiny random configs."""

import numpy as np
import pytest
import torch
import transformers

from jaxlab.models import from_hf, to_hf
from jaxlab.models.hf import UnsupportedModelError, config_from_hf

TINY = dict(
    vocab_size=211,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
)


def _hf_model(family: str, **extra):
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}[
        family
    ]
    kw = dict(TINY, **extra)
    if family == "qwen3":
        kw.setdefault("head_dim", 16)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**kw), torch_dtype=torch.float32).eval()
    with torch.no_grad():  # random norms/biases so every parameter matters
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _ids(batch=2, seq=9, vocab=211, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq)).astype(np.int64)


def _hf_logits(model, ids, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return model(torch.tensor(ids), **kw).logits.numpy()


CASES = [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": True}),
    (
        "llama",
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
            "rope_theta": 500000.0,
        },
    ),
    ("qwen2", {}),
    ("qwen3", {}),
]


@pytest.mark.parametrize("family,extra", CASES, ids=["llama", "llama-tied", "llama3-rope", "qwen2", "qwen3"])
def test_logits_match_transformers(family, extra):
    hf = _hf_model(family, **extra)
    model = from_hf(hf)
    ids = _ids()
    np.testing.assert_allclose(np.asarray(model(ids)), _hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_left_padded_batch_matches_transformers():
    hf = _hf_model("llama")
    model = from_hf(hf)
    ids = _ids(seq=8)
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    ours = np.asarray(model(ids, attention_mask=mask))
    ref = _hf_logits(hf, ids, mask)
    np.testing.assert_allclose(ours[mask == 1], ref[mask == 1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_to_hf_round_trip(family, tmp_path):
    hf = _hf_model(family)
    model = from_hf(hf)
    to_hf(model, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", torch_dtype=torch.float32).eval()
    ids = _ids(seed=3)
    np.testing.assert_allclose(_hf_logits(reloaded, ids), np.asarray(model(ids)), atol=1e-4, rtol=0)
    again = from_hf(tmp_path / "out")
    np.testing.assert_allclose(np.asarray(again(ids)), np.asarray(model(ids)), atol=1e-6, rtol=0)


def test_unsupported_architecture_is_named():
    with pytest.raises(UnsupportedModelError, match="model_type='gpt2'"):
        config_from_hf({"model_type": "gpt2"})
    with pytest.raises(UnsupportedModelError, match="rope_type='dynamic'"):
        config_from_hf(
            dict(
                model_type="llama",
                rope_scaling={"rope_type": "dynamic", "factor": 2.0},
                **{k: v for k, v in TINY.items()},
            )
        )
