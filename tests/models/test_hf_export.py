"""to_hf with a tokenizer: the folder loads in plain transformers and generate() stops where jaxlab's does."""

import json

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxlab.generate import generate
from jaxlab.models import init_model, tiny_config, to_hf
from jaxlab.models.hf import generation_config


@pytest.fixture(scope="module")
def tokenizer():
    from jaxlab.models.smollm2 import load_tokenizer

    return load_tokenizer()


def _swap_vocab(model, a: int, b: int) -> None:
    """Relabel tokens ``a`` and ``b`` in the embedding and the LM head: the same model up to renaming."""
    idx, swapped = np.asarray([a, b]), np.asarray([b, a])
    for path, var in nnx.state(model, nnx.Param).flat_state():
        if path == ("embed", "embedding"):
            var.set_value(var[...].at[idx].set(var[...][swapped]))
        elif path == ("lm_head", "kernel"):
            var.set_value(var[...].at[:, idx].set(var[...][:, swapped]))


def _model_that_stops(tokenizer, prompt: list[int], stop_at: int = 4):
    """A tiny random model (SmolLM2's vocabulary) whose greedy continuation of ``prompt`` emits EOS
    as its ``stop_at``-th new token: take the token it emits there and swap its id with EOS's."""
    cfg = tiny_config("llama", vocab_size=len(tokenizer), max_position_embeddings=128)
    model = init_model(cfg, 0)
    eos = tokenizer.eos_token_id
    free = generate(model, None, prompt, max_new_tokens=12, stop_token_ids=[]).token_ids[0]
    pick = next(t for i, t in enumerate(free) if i >= stop_at - 1 and t not in prompt and t not in free[:i])
    _swap_vocab(model, pick, eos)
    return model


def test_export_loads_in_transformers_with_tokenizer_and_stops_at_eos(tokenizer, tmp_path):
    prompt = tokenizer.encode("def add(a, b):\n    return", add_special_tokens=False)
    model = _model_that_stops(tokenizer, prompt)
    ours = generate(model, tokenizer, prompt, max_new_tokens=12)
    assert ours.finish_reasons == ["stop"] and ours.token_ids[0][-1] == tokenizer.eos_token_id

    out = to_hf(model, tmp_path / "hf", tokenizer=tokenizer)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.encode("def add(a, b):\n    return", add_special_tokens=False) == prompt
    assert tok.eos_token == tokenizer.eos_token and tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    ) == tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = np.asarray([prompt])
    with torch.no_grad():
        logits = hf(torch.tensor(ids)).logits.numpy()
        new = hf.generate(torch.tensor(ids), max_new_tokens=12)[0, len(prompt) :].tolist()
    np.testing.assert_allclose(logits, np.asarray(model(ids)), atol=1e-4, rtol=0)
    assert new == ours.token_ids[0]  # a default generate(): greedy, stops at <|im_end|>
    saved = json.loads((out / "generation_config.json").read_text())
    assert saved["eos_token_id"] == tokenizer.eos_token_id and saved["do_sample"] is False


def test_generation_config_needs_an_eos():
    class NoEos:
        eos_token_id = None
        bos_token_id = 1

    with pytest.raises(ValueError, match="eos_token_id"):
        generation_config(NoEos())
