"""``model.remat`` policies and ``model.attention`` kernels equal the plain XLA model, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlab.models import KVCache, init_model, tiny_config
from jaxlab.models.decoder import with_options
from jaxlab.train.loss import masked_cross_entropy


def _loss_and_grads(model, ids, mask):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(ids[:, :-1], attention_mask=mask[:, :-1])
        total, n = masked_cross_entropy(logits, ids[:, 1:], mask[:, 1:])
        return total / n

    return jax.jit(jax.value_and_grad(loss))(params)


def _inputs(vocab=256, b=2, s=13, seed=0):
    ids = jax.random.randint(jax.random.key(seed), (b, s), 0, vocab)
    mask = jnp.ones((b, s), jnp.int32).at[1, 9:].set(0)  # right padding in row 1
    return ids, mask


@pytest.mark.parametrize("remat", ["full", "dots_saveable", "dots_with_no_batch_dims_saveable"])
def test_remat_gives_the_same_loss_and_gradients(remat):
    cfg = tiny_config("qwen3", num_layers=2)
    ids, mask = _inputs()
    want_loss, want_grads = _loss_and_grads(init_model(cfg, seed=4), ids, mask)
    got_loss, got_grads = _loss_and_grads(init_model(cfg.replace(remat=remat), seed=4), ids, mask)
    np.testing.assert_allclose(float(got_loss), float(want_loss), rtol=0, atol=1e-6)
    for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-7)


def test_remat_changes_the_compiled_program():
    """The policy reaches the compiled backward pass: fewer live activations, not the same HLO."""
    cfg = tiny_config("llama", num_layers=2)
    ids, mask = _inputs()

    def hlo(c):
        graphdef, params, rest = nnx.split(init_model(c, seed=0), nnx.Param, ...)

        def loss(p):
            return nnx.merge(graphdef, p, rest)(ids).sum()

        return jax.jit(jax.grad(loss)).lower(params).as_text()

    assert "checkpoint" not in hlo(cfg) and hlo(cfg.replace(remat="full")) != hlo(cfg)


@pytest.mark.parametrize(
    "family,window", [("llama", None), ("qwen2", None), ("llama", 4)], ids=["causal-gqa", "bias", "sliding-window"]
)
def test_dot_product_attention_equals_xla(family, window):
    cfg = tiny_config(family, num_layers=2, sliding_window=window)
    ids, mask = _inputs(seed=1)
    ref = init_model(cfg, seed=2)
    fast = init_model(cfg.replace(attention="dot_product"), seed=2)
    program = {m: str(jax.make_jaxpr(lambda i, m=m: m(i, attention_mask=mask))(ids)) for m in (ref, fast)}
    assert program[fast] != program[ref]  # the kernel switch reached the traced program
    want = ref(ids, attention_mask=mask)
    got = fast(ids, attention_mask=mask)
    valid = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(want)[valid], rtol=0, atol=2e-5)
    (wl, wg), (gl, gg) = _loss_and_grads(ref, ids, mask), _loss_and_grads(fast, ids, mask)
    np.testing.assert_allclose(float(gl), float(wl), rtol=0, atol=1e-6)
    for g, w in zip(jax.tree.leaves(gg), jax.tree.leaves(wg)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


def test_dot_product_decode_matches_xla_decode():
    cfg = tiny_config("llama", num_layers=2)
    ids = jax.random.randint(jax.random.key(3), (2, 6), 0, 256)
    out = {}
    for impl in ("xla", "dot_product"):
        model = with_options(init_model(cfg, seed=5), attention=impl)
        cache = KVCache.init(cfg, 2, 10)
        logits, cache = model.decode(ids[:, :5], jnp.broadcast_to(jnp.arange(5), (2, 5)), cache)
        step, _ = model.decode(ids[:, 5:], jnp.full((2, 1), 5), cache)
        out[impl] = (np.asarray(logits), np.asarray(step))
    for a, b in zip(out["xla"], out["dot_product"]):
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5)


def test_unsupported_options_are_named():
    with pytest.raises(ValueError, match="remat: expected one of"):
        tiny_config("llama", remat="sometimes")
    with pytest.raises(ValueError, match="attention: expected one of"):
        tiny_config("llama", attention="flash")
    with pytest.raises(ValueError, match="attention sinks"):
        init_model(tiny_config("gpt_oss", attention="dot_product"))
