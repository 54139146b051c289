"""Stop strings inside the jitted decode loop equal the host reference trim (shortest prefix whose text contains one).

The references: a brute-force byte search for the automaton, the tokenizer's own ``decode`` for the token
bytes, and ``rollout._cut_at_stop`` (decode every prefix) on an unstopped generation for the device loop.
"""

import jax
import numpy as np
import pytest

from experiments.grpo.rollout import RolloutConfig, _cut_at_stop, sample_groups
from jaxlab.generate import generate
from jaxlab.models import init_model
from jaxlab.models.config import tiny_config
from jaxlab.models.smollm2 import load_tokenizer
from jaxlab.stop_strings import StopMatcher, byte_token_bytes, tokenizer_token_bytes


def _first_hit_reference(tokens, token_bytes, stops):
    """Index of the first token after which the joined bytes contain a stop (brute force)."""
    text = b""
    for i, t in enumerate(tokens):
        text += token_bytes[t]
        if any(s.encode() in text for s in stops):
            return i
    return None


def test_automaton_equals_brute_force_on_random_vocabularies():
    rng = np.random.default_rng(0)
    for trial in range(300):
        alphabet = b"ab\n" if trial % 2 else b"ab"  # small alphabets: stops overlap and nest often
        vocab = [bytes(rng.choice(list(alphabet), size=rng.integers(0, 5)).tolist()) for _ in range(12)]
        stops = [
            "".join(chr(c) for c in rng.choice(list(alphabet), size=rng.integers(1, 5)))
            for _ in range(rng.integers(1, 4))
        ]
        matcher = StopMatcher.build(stops, vocab)
        for _ in range(20):
            toks = rng.integers(0, len(vocab), size=rng.integers(1, 12)).tolist()
            assert matcher.first_hit(toks) == _first_hit_reference(toks, vocab, stops), (trial, vocab, stops, toks)


@pytest.fixture(scope="module")
def smol():
    tok = load_tokenizer()
    return tok, tokenizer_token_bytes(tok)


def test_token_bytes_concatenate_to_decode(smol):
    tok, tb = smol
    rng = np.random.default_rng(1)
    for _ in range(200):
        ids = rng.integers(0, len(tok), size=rng.integers(1, 8)).tolist()
        joined = b"".join(tb[t] for t in ids).decode("utf-8", "replace")
        assert joined == tok.decode(ids, skip_special_tokens=True), ids


def _tiny(vocab, seed=0):
    return init_model(
        tiny_config(
            "llama",
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            max_position_embeddings=128,
        ),
        seed,
    )


def _stops_from(token_rows, tb, rng):
    """Stop strings cut from generated text: one spanning a token boundary, one strictly inside a token."""
    spanning, inside = None, None
    for row in token_rows:
        for i in range(len(row) - 1):
            a, b = tb[row[i]], tb[row[i + 1]]
            if spanning is None and len(a) >= 2 and b and all(c < 128 for c in a[-2:] + b[:1]):
                spanning = (a[-2:] + b[:1]).decode()
            if inside is None and len(a) >= 4 and all(c < 128 for c in a):
                inside = a[1:3].decode()
    assert spanning and inside
    return spanning, inside


@pytest.mark.slow
def test_device_stop_equals_host_trim_smollm2_vocab(smol):
    tok, tb = smol
    model = _tiny(len(tok))
    rng = np.random.default_rng(2)
    prompts = [rng.integers(100, len(tok), size=rng.integers(2, 9)).tolist() for _ in range(6)]
    key, n = jax.random.key(3), 24
    free = generate(model, None, prompts, max_new_tokens=n, temperature=1.0, key=key, stop_token_ids=[])
    spanning, inside = _stops_from(free.token_ids, tb, rng)

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=True)

    for stops in ([spanning], [inside], [spanning, inside]):
        matcher = StopMatcher.build(stops, tb, model.config.vocab_size)
        out = generate(
            model, None, prompts, max_new_tokens=n, temperature=1.0, key=key, stop_token_ids=[], stop_strings=matcher
        )
        for row, got, reason in zip(free.token_ids, out.token_ids, out.finish_reasons):
            ref, found = _cut_at_stop(row, decode, stops)
            assert got == ref, (stops, row)
            assert reason == ("stop" if found else "length")
        longest = max(len(t) for t in out.token_ids)
        assert out.steps == longest  # the loop ran exactly until the last row stopped


def test_rollout_completion_mask_ends_at_multi_token_stop():
    """A byte model: every stop string is several tokens; the mask ends on the token completing it."""
    model = _tiny(256, seed=1)
    tb = byte_token_bytes(256, 0)
    prompts = [list(b"ab"), list(b"hello"), list(b"xyz")]
    key = jax.random.key(0)
    free = generate(
        model,
        None,
        [p for p in prompts for _ in range(2)],
        max_new_tokens=16,
        temperature=1.0,
        key=key,
        stop_token_ids=[0],
    )
    # for every row two consecutive ASCII bytes of its output: every row stops before max_new_tokens
    cuts = [next(i for i in range(1, len(r) - 2) if all(0 < c < 128 for c in r[i : i + 2])) for r in free.token_ids]
    stops = tuple(sorted({bytes(r[i : i + 2]).decode() for r, i in zip(free.token_ids, cuts)}))
    cfg = RolloutConfig(num_generations=2, max_new_tokens=16, temperature=1.0, stop=stops)

    def decode(ids):
        return bytes(t for t in ids if 0 < t < 256).decode("utf-8", "replace")

    ro = sample_groups(model, prompts, decode, 0, 0, cfg, key, StopMatcher.build(stops, tb))
    for i, (r, at) in enumerate(zip(free.token_ids, cuts)):
        ref, found = _cut_at_stop(r, decode, stops)
        assert found and 2 <= len(ref) <= at + 2
        assert ro.completion_mask[i].sum() == len(ref)
        assert ro.completion_ids[i, : len(ref)].tolist() == ref
        assert not ro.truncated[i]
    assert ro.extras["decode_steps"] == ro.completion_mask.sum(axis=1).max() < 16  # the device loop ended there
