"""Generation on tiny random models: cache equivalence, sampling controls, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.generate import _sample, generate
from jaxlab.models import init_model, tiny_config


@pytest.fixture(scope="module")
def model():
    return init_model(tiny_config("qwen3"), seed=3)


def _greedy_no_cache(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(np.asarray(model(jnp.asarray([ids])))[0, -1].argmax()))
    return ids[len(prompt) :]


def test_cached_greedy_equals_full_recompute(model):
    prompts = [[5, 17, 42, 9, 100], [7, 8]]
    out = generate(model, None, prompts, max_new_tokens=6, stop_token_ids=[])
    for prompt, toks in zip(prompts, out.token_ids):
        assert toks == _greedy_no_cache(model, prompt, 6)
    assert out.finish_reasons == ["length", "length"]


def test_prefill_last_only_matches_full_logits_and_cache(model):
    """``decode(last_only=True)`` (the prefill ``generate`` runs) keeps the last position's logits and the cache."""
    from jaxlab.models.decoder import KVCache

    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, model.config.vocab_size, (2, 7)), jnp.int32)
    mask = jnp.asarray([[0, 0, 1, 1, 1, 1, 1], [1] * 7], jnp.int32)  # left padding, as generate builds it
    pos = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    cache = KVCache.init(model.config, 2, 10)
    full, c_full = model.decode(ids, pos, cache, attention_mask=mask)
    last, c_last = model.decode(ids, pos, cache, attention_mask=mask, last_only=True)
    assert last.shape == (2, 1, model.config.vocab_size)
    np.testing.assert_allclose(np.asarray(last), np.asarray(full[:, -1:]), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(c_full), jax.tree.leaves(c_last)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stop_token_ends_sequence(model):
    prompt = [5, 17, 42]
    free = _greedy_no_cache(model, prompt, 4)
    stop = free[1]
    out = generate(model, None, [prompt], max_new_tokens=4, stop_token_ids=[stop])
    assert out.token_ids[0] == free[: free.index(stop) + 1] and out.finish_reasons == ["stop"]


def test_sampling_is_seeded_and_top_k_one_is_greedy(model):
    prompt = [[1, 2, 3, 4]]
    a = generate(model, None, prompt, max_new_tokens=5, temperature=1.0, key=jax.random.key(1)).token_ids
    b = generate(model, None, prompt, max_new_tokens=5, temperature=1.0, key=jax.random.key(1)).token_ids
    assert a == b
    greedy = generate(model, None, prompt, max_new_tokens=5).token_ids
    top1 = generate(model, None, prompt, max_new_tokens=5, temperature=0.7, top_k=1, key=jax.random.key(2)).token_ids
    assert top1 == greedy


def test_top_p_keeps_only_the_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = {int(_sample(logits, jax.random.key(i), 1.0, None, 0.7)[0]) for i in range(200)}
    assert draws == {0, 1}


def test_bad_inputs_name_the_problem(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(model, None, [[1, 999]], max_new_tokens=2)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        generate(model, None, [[1] * 250], max_new_tokens=10)
    with pytest.raises(ValueError, match="key"):
        generate(model, None, [[1, 2]], max_new_tokens=2, temperature=0.5)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        generate(model, None, ["hello"], max_new_tokens=2)
