"""Per-row cache positions in the serve engine: requests join and leave a running batch in any order.

Reference: ``jaxlab.generate.generate`` on each request alone (greedy, one jitted while-loop, a fresh
left-padded cache), a path that shares no admission / row-reuse code with the engine.
"""

import random
import threading
import time

import pytest

from jaxlab.generate import generate
from jaxlab.llm.engine import BatchEngine, Job


@pytest.fixture(scope="module")
def tok():
    from jaxlab.models.smollm2 import load_tokenizer

    return load_tokenizer()


def _engine(tok, family: str) -> BatchEngine:
    from jaxlab.models import init_model, tiny_config

    model = init_model(
        tiny_config(
            family,
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            max_position_embeddings=256,
        ),
        seed=1,
    )
    # 4 rows, a 128-slot cache, prompt buckets of 16: under one shared write index this batch could not
    # admit a single request while its first long one (16 + 100 slots) runs.
    return BatchEngine(
        model,
        tok,
        max_batch=4,
        max_model_len=128,
        min_prompt_bucket=16,
        min_cache_bucket=64,
        join_cache_len=128,
        batch_wait_s=0.05,
        min_span=16,
    )


def _submit(engine: BatchEngine, ids: list[int], max_tokens: int) -> tuple[list, threading.Event]:
    events, done = [], threading.Event()

    def emit(ev):
        events.append(ev)
        if ev[0] in ("finish", "error"):
            done.set()

    engine.submit(Job(prompt_ids=ids, max_tokens=max_tokens, emit=emit))
    return events, done


def _result(events: list) -> tuple[str, int]:
    assert events[-1][0] == "finish", events[-1]
    return "".join(ev[2] for ev in events if ev[0] == "delta"), events[-1][3]


@pytest.mark.parametrize("family", ["llama", "mistral"])  # mistral: a sliding window of 8 on every layer
def test_requests_join_and_leave_in_random_order_and_match_generate_alone(tok, family):
    engine = _engine(tok, family)
    try:
        rng = random.Random(7)
        vocab = range(100, 40000)
        reqs = [([rng.choice(vocab) for _ in range(16)], 100)]  # the long one keeps the batch alive throughout
        reqs += [([rng.choice(vocab) for _ in range(rng.randint(2, 20))], rng.choice([3, 9, 17])) for _ in range(23)]
        runs = [_submit(engine, *r) for r in reqs[:4]]  # one 4-row batch
        for ids, max_tokens in reqs[4:]:  # the rest arrive while it decodes, a few steps apart
            steps = engine.decode_steps
            while engine.decode_steps < steps + rng.randint(0, 4) and not runs[0][1].is_set():
                time.sleep(0.002)
            runs.append(_submit(engine, ids, max_tokens))
        for _, done in runs:
            assert done.wait(300)
        assert engine.batches_run == 1, "a request waited for the batch to drain"
        assert engine.admitted_mid_batch >= 16  # rows were freed and reused many times
        for (ids, max_tokens), (events, _) in zip(reqs, runs):
            ref = generate(engine.model, tok, [ids], max_new_tokens=max_tokens)
            assert _result(events) == (ref.texts[0], len(ref.token_ids[0])), (ids, max_tokens)
    finally:
        engine.close()


def test_a_reused_row_does_not_see_its_previous_occupant(tok):
    """A 2-row batch: a long request in row 0; row 1 first holds a 12 + 60 token request, then a 4-token
    prompt joins into that row while slots 4..71 still hold the old keys. Its output equals running it
    alone, so the row restarted at slot 0 and attends to none of the old keys."""
    engine = _engine(tok, "llama")
    try:
        reqs = [(list(range(3000, 3010)), 110), (list(range(4000, 4012)), 60), ([6000, 6001, 6002, 6003], 20)]
        runs = [_submit(engine, *r) for r in reqs[:2]]
        assert runs[1][1].wait(300) and not runs[0][1].is_set()  # row 1 is free, row 0 still decoding
        admitted = engine.admitted_mid_batch
        runs.append(_submit(engine, *reqs[2]))
        for _, done in runs:
            assert done.wait(300)
        assert engine.batches_run == 1 and engine.admitted_mid_batch == admitted + 1
        for (ids, max_tokens), (events, _) in zip(reqs, runs):
            ref = generate(engine.model, tok, [ids], max_new_tokens=max_tokens)
            assert _result(events) == (ref.texts[0], len(ref.token_ids[0])), ids
    finally:
        engine.close()


def test_admit_step_resets_only_the_joining_row():
    """White-box: after admitting a 3-token prompt into row 1 of a cache whose rows are full of old keys,
    row 1 holds exactly 3 valid slots and index 3; rows 0 and 2 (keys, values, validity, index) are unchanged."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxlab.generate import admit_step, new_cache
    from jaxlab.models import init_model, tiny_config

    model = init_model(
        tiny_config(
            "llama",
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            max_position_embeddings=64,
        ),
        seed=0,
    )
    graphdef, state = nnx.split(model)
    cache = new_cache(model, 3, 32)
    noise = jax.random.normal(jax.random.key(1), cache.k[0].shape)
    cache = cache.replace(
        k=tuple(k + noise for k in cache.k),
        v=tuple(v - noise for v in cache.v),
        valid=jnp.ones_like(cache.valid),
        index=jnp.asarray([20, 30, 25], jnp.int32),
    )
    before = jax.tree.map(np.asarray, cache)
    ids = jnp.asarray([[5, 6, 7, 0, 0, 0, 0, 0]], jnp.int32)
    mask = jnp.asarray([[1, 1, 1, 0, 0, 0, 0, 0]], jnp.int32)
    ones = jnp.ones((1,), jnp.float32)
    (tok, *_), after, pos = admit_step(
        graphdef,
        state,
        cache,
        jnp.asarray([1]),
        ids,
        mask,
        jnp.full((1, 2), -1, jnp.int32),
        0 * ones,
        ones,
        jnp.zeros((1,), jnp.int32),
        jnp.asarray(False),
    )
    after = jax.tree.map(np.asarray, after)
    assert after.valid[1].tolist() == [True] * 3 + [False] * 29 and after.index.tolist() == [20, 3, 25]
    assert int(pos[0]) == 3
    for old, new in zip(before.k + before.v + (before.valid,), after.k + after.v + (after.valid,)):
        assert np.array_equal(old[[0, 2]], new[[0, 2]])
    ref = np.asarray(model(ids[:, :3])[0, -1]).argmax()  # the prompt alone, no cache
    assert int(tok[0]) == int(ref)
