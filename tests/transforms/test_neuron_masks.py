"""Deactivating a language-neuron set zeroes exactly its rows/columns and equals a reference forward without it."""

import numpy as np
import pytest
from flax import nnx
from ln_reference import flat_params, reference
from test_neuron_stats import padded_rows
from tx_helpers import tiny_model

from jaxlab.transforms import (
    apply_masks,
    apply_neuron_masks,
    deactivation_masks,
    random_control,
    selection_masks,
    to_ptl_masks,
)


def random_sets(cfg, seed):
    rng = np.random.default_rng(seed)
    L, F, A = cfg.num_layers, cfg.intermediate_size, cfg.num_heads * cfg.head_dim
    return rng.random((L, F)) < 0.2, rng.random((L, A)) < 0.1, rng.random((L, A)) < 0.1


def kv_of(sets, cfg):
    """Query-space dims -> KV-space dims, by an explicit loop over heads."""
    H, KV, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    out = np.zeros((cfg.num_layers, KV * D), bool)
    for layer in range(cfg.num_layers):
        for h in range(H):
            for d in range(D):
                if sets[layer, h * D + d]:
                    out[layer, (h // (H // KV)) * D + d] = True
    return out


def expected_zeroed(path, shape, cfg, ffn, qk, vo, style):
    """Bool mask of the entries of the leaf at ``path`` that deactivation must zero."""
    out = np.zeros(shape, bool)
    if path[0] != "layers":
        return out
    i, module, proj, kind = path[1], path[2], path[3], path[-1]
    cols = {
        ("mlp", "up_proj"): ffn[i] if style == "plnd" else None,
        ("mlp", "gate_proj"): ffn[i] if style == "lape" else None,
        ("attn", "q_proj"): qk[i],
        ("attn", "k_proj"): kv_of(qk, cfg)[i],
        ("attn", "v_proj"): kv_of(vo, cfg)[i],
    }
    rows = {("mlp", "down_proj"): ffn[i] if style == "plnd" else None, ("attn", "o_proj"): vo[i]}
    sel = cols.get((module, proj))
    if sel is not None:
        out[..., sel] = True
    sel = rows.get((module, proj))
    if sel is not None and kind == "kernel":
        out[sel, :] = True
    return out


@pytest.mark.parametrize("style", ["plnd", "lape"])
def test_deactivation_changes_exactly_the_set_rows_and_columns(style):
    model = tiny_model("qwen2", seed=11, num_layers=2)  # q/k/v biases too
    cfg = model.config
    ffn, qk, vo = random_sets(cfg, 12)
    if style == "lape":
        qk, vo = np.zeros_like(qk), np.zeros_like(vo)
    before = flat_params(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    masked = apply_neuron_masks(params, deactivation_masks(cfg, ffn, qk, vo), style=style)
    after = {tuple(p): np.asarray(v[...], np.float64) for p, v in nnx.to_flat_state(masked)}
    total = 0
    for path, old in before.items():
        want = expected_zeroed(path, old.shape, cfg, ffn, qk, vo, style)
        changed = after[path] != old
        np.testing.assert_array_equal(changed, want, err_msg=str(path))
        np.testing.assert_array_equal(after[path][want], 0.0)
        total += int(want.sum())
    assert total > 0


@pytest.mark.parametrize("style", ["plnd", "lape"])
def test_masked_model_equals_reference_forward_without_the_units(style):
    model = tiny_model("llama", seed=13, num_layers=2)
    cfg = model.config
    ffn, qk, vo = random_sets(cfg, 14)
    if style == "lape":
        qk, vo = np.zeros_like(qk), np.zeros_like(vo)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    masked = nnx.merge(graphdef, apply_neuron_masks(params, deactivation_masks(cfg, ffn, qk, vo), style), rest)
    ids, _ = padded_rows(1, seed=15)
    zero = {"ffn": ffn, "q": qk, "k": kv_of(qk, cfg), "v": kv_of(vo, cfg), "o": vo}
    want, _ = reference(model, ids[0], zero=zero)
    got = np.asarray(masked(ids))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    plain, _ = reference(model, ids[0])
    assert np.abs(plain - want).max() > 1e-3  # the deactivation is visible


def test_ffn_sets_through_the_ptl_masks_match():
    model = tiny_model("llama", seed=16, num_layers=2)
    cfg = model.config
    ffn, _, _ = random_sets(cfg, 17)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ids, _ = padded_rows(2, seed=18)
    ptl = nnx.merge(graphdef, apply_masks(params, to_ptl_masks(cfg, ffn), cfg.head_dim), rest)(ids)
    ours = nnx.merge(graphdef, apply_neuron_masks(params, deactivation_masks(cfg, ffn)), rest)(ids)
    np.testing.assert_allclose(np.asarray(ptl), np.asarray(ours), rtol=1e-5, atol=1e-6)
    sel = selection_masks(cfg, ffn)
    assert [int(np.sum(m)) for m in sel.mlp] == ffn.sum(-1).tolist()


def test_random_control_has_equal_counts_per_layer_and_is_seeded():
    rng = np.random.default_rng(19)
    sets = rng.random((4, 60)) < 0.2
    a, b, c = random_control(sets, 1), random_control(sets, 1), random_control(sets, 2)
    np.testing.assert_array_equal(a.sum(-1), sets.sum(-1))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    d = random_control(sets, 3, exclude=sets)
    assert not (d & sets).any() and (d.sum(-1) == sets.sum(-1)).all()
    with pytest.raises(ValueError, match=r"sets\[0\]"):
        random_control(np.ones((1, 5), bool), 0, exclude=np.eye(1, 5, dtype=bool))
    with pytest.raises(ValueError, match="ffn"):
        deactivation_masks(tiny_model("llama", num_layers=2).config, np.ones((3, 3), bool))
