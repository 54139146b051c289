"""Lean memory (issue 15): donating the model changes no loss and deletes no array a caller still reads;
the checkpoint fingerprint goes leaf by leaf (same sums, no state-sized temporaries); per-phase peak RSS."""

import ctypes

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.train import memory
from jaxlab.train.checkpoint import fingerprint
from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import copy_shared, split_model
from jaxlab.train.trainer import TrainConfig, fit

OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=1, decay_steps=4)


def _data(vocab: int, steps: int = 4, b: int = 2, s: int = 16):
    rng = np.random.default_rng(0)
    for _ in range(steps):
        ids = rng.integers(1, vocab, size=(b, s + 1)).astype(np.int32)
        yield {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((b, s), np.int32)}


def _snapshot(tree) -> list[np.ndarray]:
    return [np.array(x) for x in jax.tree.leaves(tree)]


def _fit(model, donate: bool, **kw):
    cfg = model.config
    return fit(model, _data(cfg.vocab_size), OPTIM, TrainConfig(steps=4, progress=False), donate_model=donate, **kw)


def test_donating_the_model_gives_the_same_losses_and_weights_and_consumes_its_arrays():
    cfg = tiny_config("llama")
    kept, given = init_model(cfg, 0), init_model(cfg, 0)
    before = _snapshot(nnx.state(kept, nnx.Param))
    plain, donated = _fit(kept, donate=False), _fit(given, donate=True)
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in donated.history]
    for a, b in zip(_snapshot(plain.state.params), _snapshot(donated.state.params)):
        np.testing.assert_array_equal(a, b)
    # without donation the caller's model is untouched; with it, its buffers went into the step
    leaves = jax.tree.leaves(nnx.state(kept, nnx.Param))
    assert not any(x.is_deleted() for x in leaves)
    for a, b in zip(before, _snapshot(nnx.state(kept, nnx.Param))):
        np.testing.assert_array_equal(a, b)
    assert all(x.is_deleted() for x in jax.tree.leaves(nnx.state(given, nnx.Param)))


def test_donation_never_deletes_arrays_the_loss_context_shares_with_the_model():
    """A teacher that shares buffers with the student (the base model's embeddings in PTL distillation) is
    read by every step: donating the student's copy of those leaves must not delete the teacher's."""
    cfg = tiny_config("llama")
    student = init_model(cfg, 0)
    t_graphdef, t_params, t_rest = split_model(student)  # the teacher's arrays are the student's own
    before = _snapshot(t_params)

    def loss_fn(params, rest_and_ctx, graphdef, batch):
        rest, (tp, tr) = rest_and_ctx
        logits = nnx.merge(graphdef, params, rest)(batch["input_ids"])
        anchor = nnx.merge(t_graphdef, tp, tr)(batch["input_ids"])
        from jaxlab.train.loss import masked_cross_entropy

        loss_sum, n = masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
        return loss_sum + 1e-3 * jnp.sum(jax.lax.stop_gradient(anchor) ** 2), n

    result = _fit(student, donate=True, loss_fn=loss_fn, loss_context=(t_params, t_rest))
    assert len(result.history) == 4 and all(np.isfinite(h["loss"]) for h in result.history)
    assert not any(x.is_deleted() for x in jax.tree.leaves(t_params))
    for a, b in zip(before, _snapshot(t_params)):
        np.testing.assert_array_equal(a, b)


def test_copy_shared_copies_exactly_the_leaves_held_elsewhere():
    a, b, c = jnp.arange(4.0), jnp.ones(3), jnp.zeros(2)
    out = copy_shared({"a": a, "b": b, "c": c}, {"x": b}, [c, None])
    assert out["a"] is a  # held nowhere else: no copy
    assert out["b"] is not b and out["c"] is not c
    np.testing.assert_array_equal(out["b"], b)
    assert out["b"].unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
    assert copy_shared({"a": a}) == {"a": a}


def _reference_fingerprint(x: np.ndarray) -> int:
    bits = x.view(np.uint32).reshape(-1).astype(np.uint64)
    weights = (np.arange(bits.size, dtype=np.uint64) % 65521) + 1
    return int(np.sum((bits * weights) % 2**32) % 2**32)


def test_fingerprint_matches_a_numpy_reference_leaf_by_leaf():
    rng = np.random.default_rng(0)
    tree = {"w": rng.normal(size=(70, 1000)).astype(np.float32), "b": rng.normal(size=(13,)).astype(np.float32)}
    prints, finite = fingerprint(jax.tree.map(jnp.asarray, tree))
    assert finite and prints == {"['b']": _reference_fingerprint(tree["b"]), "['w']": _reference_fingerprint(tree["w"])}
    _, finite = fingerprint({"w": jnp.asarray(tree["w"]), "bad": jnp.array([1.0, jnp.inf])})
    assert not finite


def _trim() -> None:
    """Give freed heap back to the kernel, so a later allocation shows up as RSS growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


@pytest.mark.skipif(memory.current_rss_bytes() is None, reason="needs /proc/self/status (Linux)")
def test_fingerprint_needs_no_state_sized_temporaries():
    leaves = {f"w{i}": jnp.full((1024, 6144), float(i + 1), jnp.float32) for i in range(8)}  # 8 x 25 MB
    state_bytes = sum(x.nbytes for x in leaves.values())
    fingerprint({"w0": leaves["w0"]})  # compile outside the measurement
    jax.block_until_ready(leaves)
    memory.clear()
    _trim()
    start = memory.current_rss_bytes()
    with memory.phase("fingerprint"):
        fingerprint(leaves)
    growth = memory.phases()[0]["peak_bytes"] - start
    assert growth < 0.35 * state_bytes, (
        f"fingerprint grew RSS by {growth / 1e6:.0f} MB for a {state_bytes / 1e6:.0f} MB state"
    )


@pytest.mark.skipif(memory.current_rss_bytes() is None, reason="needs /proc/self/status (Linux)")
def test_phase_peaks_are_per_phase_and_nest():
    memory.clear()
    _trim()
    with memory.phase("outer"):
        with memory.phase("big"):
            block = np.ones((300 << 20) // 8)  # 300 MB, touched
            big_start = memory.current_rss_bytes() - block.nbytes
            del block
            _trim()
            with memory.phase("small"):  # resets the high-water mark while "big" and "outer" are open
                small = np.ones((20 << 20) // 8)
                del small
    rows = {r["phase"]: r for r in memory.phases()}
    assert list(rows) == ["small", "big", "outer"] and all(r["count"] == 1 for r in rows.values())
    assert rows["big"]["peak_bytes"] >= big_start + (280 << 20)
    assert rows["small"]["peak_bytes"] < rows["big"]["peak_bytes"] - (200 << 20)  # the reset worked
    assert rows["outer"]["peak_bytes"] >= rows["big"]["peak_bytes"]  # the inner peak counts for the outer phase
    assert memory.peak_bytes() >= rows["big"]["peak_bytes"]
    text = memory.format_phases()
    assert "big" in text and "VmHWM" in text
