"""``model.scan_layers``: one scanned block gives the unrolled model's losses and gradients; unlike layers
are refused by name."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.models.decoder import with_options
from tests.models.test_remat_attention import _inputs, _loss_and_grads


def _program(model, ids, mask):
    graphdef, state = nnx.split(model)
    return str(jax.make_jaxpr(lambda st, i: nnx.merge(graphdef, st)(i, attention_mask=mask))(state, ids))


@pytest.mark.parametrize(
    "family,remat", [("llama", "none"), ("qwen3", "full"), ("mistral", "dots_saveable"), ("qwen3_moe", "none")]
)
def test_scan_equals_unrolled(family, remat):
    cfg = tiny_config(family, num_layers=3, remat=remat)
    ids, mask = _inputs(seed=2)
    unrolled = init_model(cfg, seed=3)
    scanned = with_options(init_model(cfg, seed=3), scan_layers=True)
    # one scan over the 3 layers (MoE's grouped matmuls scan too, over other lengths)
    assert "length=3" in _program(scanned, ids, mask) and "length=3" not in _program(unrolled, ids, mask)
    np.testing.assert_allclose(
        np.asarray(scanned(ids, attention_mask=mask)), np.asarray(unrolled(ids, attention_mask=mask)), rtol=0, atol=1e-5
    )
    (wl, wg), (gl, gg) = _loss_and_grads(unrolled, ids, mask), _loss_and_grads(scanned, ids, mask)
    np.testing.assert_allclose(float(gl), float(wl), rtol=0, atol=1e-6)
    assert jax.tree.structure(gg) == jax.tree.structure(wg)  # per-layer parameter tree, unchanged
    for g, w in zip(jax.tree.leaves(gg), jax.tree.leaves(wg)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-7)
    if cfg.moe is not None:
        aux_s = scanned(ids, attention_mask=mask, return_aux=True)[1]
        aux_u = unrolled(ids, attention_mask=mask, return_aux=True)[1]
        np.testing.assert_allclose(float(aux_s["aux_loss"]), float(aux_u["aux_loss"]), rtol=1e-6)
        assert len(aux_s["router_logits"]) == 3


def test_scan_with_packed_segments_equals_unrolled():
    cfg = tiny_config("llama", num_layers=2)
    ids, _ = _inputs(seed=4)
    seg = np.asarray([[1] * 5 + [2] * 8, [1] * 9 + [0] * 4])
    want = init_model(cfg, seed=1)(ids, segment_ids=seg)
    got = init_model(cfg.replace(scan_layers=True), seed=1)(ids, segment_ids=seg)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)


def test_unlike_layers_are_refused():
    with pytest.raises(ValueError, match="scan_layers: .*layer widths differ"):
        init_model(tiny_config("llama", intermediate_size=(128, 96), scan_layers=True))
    with pytest.raises(ValueError, match="scan_layers: .*attention windows differ"):
        init_model(tiny_config("gpt_oss", scan_layers=True))
    with pytest.raises(ValueError, match="scan_layers: .*dense and MoE"):
        init_model(tiny_config("qwen3_moe", moe={"dense_layers": (0,)}, scan_layers=True))
    pruned = init_model(tiny_config("llama", num_heads=(4, 2), num_kv_heads=(2, 2)))
    with pytest.raises(ValueError, match="scan_layers"):
        with_options(pruned, scan_layers=True)
