"""The ``model.attention`` switch through whole models: splash (interpreted on CPU) equals the xla reference,
decode falls back where a kernel cannot express the cache mask, cudnn refuses clearly on a CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import KVCache, init_model, tiny_config
from jaxlab.models.decoder import with_options
from tests.models.test_remat_attention import _inputs, _loss_and_grads


@pytest.mark.parametrize(
    "family,window",
    [("llama", None), ("mistral", 8), pytest.param("gpt_oss", 4, marks=pytest.mark.slow)],
    ids=["causal-gqa-padding", "sliding-window", "sinks-alternating-window-moe"],
)
def test_splash_model_equals_xla(family, window):
    cfg = tiny_config(family, num_layers=2, sliding_window=window)
    ids, mask = _inputs(seed=1)
    ref, fast = init_model(cfg, seed=2), init_model(cfg.replace(attention="splash"), seed=2)
    assert "pallas_call" in str(jax.make_jaxpr(lambda i: fast(i, attention_mask=mask))(ids))
    valid = np.asarray(mask, bool)
    want, got = ref(ids, attention_mask=mask), fast(ids, attention_mask=mask)
    np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(want)[valid], rtol=0, atol=3e-5)
    (wl, wg), (gl, gg) = _loss_and_grads(ref, ids, mask), _loss_and_grads(fast, ids, mask)
    np.testing.assert_allclose(float(gl), float(wl), rtol=0, atol=1e-6)
    for g, w in zip(jax.tree.leaves(gg), jax.tree.leaves(wg)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=2e-6)


def _decode(model, ids):
    cache = KVCache.init(model.config, 2, 10)
    prompt = ids[:, :5]
    fn = jax.jit(lambda c, i, p: model.decode(i, p, c))
    logits, cache = fn(cache, prompt, jnp.broadcast_to(jnp.arange(5), (2, 5)))
    step, _ = fn(cache, ids[:, 5:], jnp.full((2, 1), 5))
    jaxpr = str(jax.make_jaxpr(lambda c: model.decode(ids[:, 5:], jnp.full((2, 1), 5), c))(cache))
    return (np.asarray(logits), np.asarray(step)), jaxpr


@pytest.mark.parametrize("impl,fallback,dtype", [("splash", "xla", "float32"), ("cudnn", "dot_product", "bfloat16")])
def test_decode_falls_back_where_the_kernel_cannot_take_the_cache_mask(impl, fallback, dtype):
    """Splash masks are static and cuDNN's causal mask starts at slot 0; a decode step's offset is traced."""
    cfg = tiny_config("gpt_oss" if impl == "splash" else "llama", num_layers=2, dtype=dtype)
    ids = jax.random.randint(jax.random.key(3), (2, 6), 0, 256)
    got, program = _decode(with_options(init_model(cfg, seed=5), attention=impl), ids)
    want, ref_program = _decode(with_options(init_model(cfg, seed=5), attention=fallback), ids)
    assert "pallas_call" not in program and program == ref_program
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_cudnn_needs_a_gpu_and_half_precision():
    ids, mask = _inputs()
    model = init_model(tiny_config("llama", dtype="bfloat16", attention="cudnn"), seed=0)
    with pytest.raises(ValueError, match=r"model.attention='cudnn' needs an NVIDIA GPU"):
        model(ids, attention_mask=mask)
    with pytest.raises(ValueError, match=r"'cudnn'.*bfloat16 or float16.*float32"):
        init_model(tiny_config("llama", attention="cudnn"))
    with pytest.raises(ValueError, match="has no attention sinks"):
        init_model(tiny_config("gpt_oss", dtype="bfloat16", attention="cudnn"))
    with pytest.raises(ValueError, match="attention: expected one of"):
        with_options(init_model(tiny_config("llama")), attention="flash")
