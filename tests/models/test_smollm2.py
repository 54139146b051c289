"""The real SmolLM2-135M-Instruct: logits and greedy-generation parity with transformers."""

import numpy as np
import pytest
import torch
import transformers

from jaxlab.generate import generate
from jaxlab.models import load_smollm2
from jaxlab.models.smollm2 import smollm2_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    model, tok = load_smollm2()
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_folder(), dtype=torch.float32).eval()
    return model, tok, hf


def test_logits_match_transformers(pair):
    model, tok, hf = pair
    ids = np.asarray([tok.encode("import numpy as np\n\ndef softmax(x):\n    return")], np.int64)
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(ids)), ref, atol=2e-3, rtol=0)
    assert np.array_equal(np.asarray(model(ids)).argmax(-1), ref.argmax(-1))


def test_greedy_generation_matches_transformers_for_32_tokens(pair):
    model, tok, hf = pair
    messages = [{"role": "user", "content": "Write a Python function that reverses a string."}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        ref = hf.generate(
            torch.tensor([prompt]), max_new_tokens=32, do_sample=False, min_new_tokens=32, pad_token_id=tok.pad_token_id
        )[0, len(prompt) :].tolist()
    ours = generate(model, tok, [messages], max_new_tokens=32, stop_token_ids=[]).token_ids[0]
    assert ours == ref


def test_batched_left_padding_equals_one_by_one(pair):
    model, tok, _ = pair
    prompts = ["The capital of France is", "def add(a, b):\n    return a + b\n\ndef mul(a, b):"]
    batch = generate(model, tok, prompts, max_new_tokens=12, stop_token_ids=[]).token_ids
    for prompt, row in zip(prompts, batch):
        assert generate(model, tok, [prompt], max_new_tokens=12, stop_token_ids=[]).token_ids[0] == row
