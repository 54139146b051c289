"""Mistral, YaRN and sliding windows on the dense families: logits parity with transformers, and back out."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jaxlab.generate import generate
from jaxlab.models import from_hf, to_hf
from jaxlab.models.hf import UnsupportedModelError, config_from_hf
from jaxlab.models.config import tiny_config

TINY = dict(
    vocab_size=211,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
)
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "rope_theta": 10000.0}
CONFIGS = {
    "llama": transformers.LlamaConfig,
    "qwen2": transformers.Qwen2Config,
    "qwen3": transformers.Qwen3Config,
    "mistral": transformers.MistralConfig,
}


def _hf_model(family: str, **extra):
    torch.manual_seed(0)
    cfg = CONFIGS[family](**{**TINY, **extra})
    cfg._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # random norms/biases so every parameter matters
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _ids(seq=24, batch=2, seed=1):
    return np.random.default_rng(seed).integers(0, TINY["vocab_size"], (batch, seq)).astype(np.int64)


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


CASES = {
    "mistral": ("mistral", dict(sliding_window=5)),
    "mistral-no-window": ("mistral", dict(sliding_window=None)),
    "llama-yarn": ("llama", dict(rope_parameters=YARN)),
    "qwen2-yarn": ("qwen2", dict(rope_parameters=YARN)),
    "qwen2-sliding": ("qwen2", dict(use_sliding_window=True, sliding_window=5, max_window_layers=1)),
    "qwen3-sliding": ("qwen3", dict(use_sliding_window=True, sliding_window=6, max_window_layers=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers_and_export_round_trips(case, tmp_path):
    family, extra = CASES[case]
    hf = _hf_model(family, **extra)
    model = from_hf(hf)
    ids = _ids()  # 24 tokens: past every window (YaRN past its original context: the next test)
    ref = _hf_logits(hf, ids)
    np.testing.assert_allclose(np.asarray(model(ids)), ref, atol=1e-4, rtol=0)
    to_hf(model, tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    np.testing.assert_allclose(_hf_logits(back, ids), ref, atol=1e-4, rtol=0)


def test_yarn_past_the_original_context_matches_transformers():
    hf = _hf_model("llama", rope_parameters={**YARN, "original_max_position_embeddings": 16})
    ids = _ids(seq=40)
    np.testing.assert_allclose(np.asarray(from_hf(hf)(ids)), _hf_logits(hf, ids), atol=1e-4, rtol=0)


def test_sliding_window_config_is_read_as_transformers_does():
    cfg = config_from_hf(
        {**TINY, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1}
    )
    assert cfg.layer_window == (None, 5, 5)
    assert config_from_hf({**TINY, "model_type": "qwen2", "sliding_window": 5}).layer_window == (None,) * 3
    assert config_from_hf({**TINY, "model_type": "mistral", "sliding_window": 7}).layer_window == (7,) * 3
    # llama has no window in transformers: exporting one would silently change the model
    with pytest.raises(UnsupportedModelError, match="llama has no sliding-window"):
        from jaxlab.models.hf import config_to_hf

        config_to_hf(tiny_config("llama", sliding_window=4))


def test_mistral_greedy_generation_matches_transformers():
    """KV-cache decoding past the window (the cache must drop what the window hides)."""
    hf = _hf_model("mistral", sliding_window=4)
    model = from_hf(hf)
    prompt = _ids(seq=6, batch=1)[0].tolist()
    ours = generate(model, None, prompt, max_new_tokens=10, stop_token_ids=[]).token_ids[0]
    with torch.no_grad():
        theirs = hf.generate(
            torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, 6:].tolist()
    assert ours == theirs
    assert jnp.asarray(model(np.asarray([prompt]))).shape == (1, 6, TINY["vocab_size"])
