"""Masks vs a loop reference, and compacted == masked logits on each family; transformers export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tx_helpers import FAMILIES, random_masks, tiny_model

from jaxlab.models.hf import UnsupportedModelError
from jaxlab.transforms import CompactionError, apply_masks, combine, compact, compact_config, full_masks, param_count

IDS = np.random.default_rng(3).integers(0, 256, (2, 11)).astype(np.int32)


def _masked_model(model, masks):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, apply_masks(params, masks, model.config.head_dim), rest)


def _reference_zero(model, masks):
    """Slow reference: zero each pruned unit's weights one index at a time (numpy)."""
    cfg, hd = model.config, model.config.head_dim
    w = {tuple(p): np.array(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    for i in range(cfg.num_layers):
        a, m = ("layers", i, "attn"), ("layers", i, "mlp")
        for j, keep in enumerate(np.asarray(masks.mlp[i])):
            if not keep:
                w[m + ("gate_proj", "kernel")][:, j] = 0
                w[m + ("up_proj", "kernel")][:, j] = 0
                w[m + ("down_proj", "kernel")][j, :] = 0
        groups = cfg.layer_heads[i] // cfg.layer_kv_heads[i]
        for h in range(cfg.layer_heads[i]):
            if not (masks.heads[i][h] and masks.kv_heads[i][h // groups]):
                w[a + ("q_proj", "kernel")][:, h * hd : (h + 1) * hd] = 0
                w[a + ("o_proj", "kernel")][h * hd : (h + 1) * hd, :] = 0
                if a + ("q_proj", "bias") in w:
                    w[a + ("q_proj", "bias")][h * hd : (h + 1) * hd] = 0
        for k in range(cfg.layer_kv_heads[i]):
            if not masks.kv_heads[i][k]:
                for p in ("k_proj", "v_proj"):
                    w[a + (p, "kernel")][:, k * hd : (k + 1) * hd] = 0
                    if a + (p, "bias") in w:
                        w[a + (p, "bias")][k * hd : (k + 1) * hd] = 0
        if not masks.layers[i]:
            w[a + ("o_proj", "kernel")][:] = 0
            w[m + ("down_proj", "kernel")][:] = 0
    return w


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_masks_matches_reference_and_jit(family):
    model = tiny_model(family, seed=1)
    masks = random_masks(model.config, seed=2)
    params = nnx.state(model, nnx.Param)
    got = apply_masks(params, masks, model.config.head_dim)
    jitted = jax.jit(apply_masks, static_argnums=2)(params, masks, model.config.head_dim)
    ref = _reference_zero(model, masks)
    for path, var in nnx.to_flat_state(got):
        np.testing.assert_array_equal(np.asarray(var[...]), ref[tuple(path)], err_msg=str(path))
    for (_, a), (_, b) in zip(nnx.to_flat_state(got), nnx.to_flat_state(jitted)):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))


def test_masks_compose_and_are_idempotent():
    model = tiny_model("qwen2", seed=4)
    a, b = random_masks(model.config, seed=5), random_masks(model.config, seed=6, drop_layer=False)
    params = nnx.state(model, nnx.Param)
    hd = model.config.head_dim
    twice = apply_masks(apply_masks(params, a, hd), b, hd)
    once = apply_masks(params, combine(a, b), hd)
    again = apply_masks(once, combine(a, b), hd)
    for (_, x), (_, y), (_, z) in zip(nnx.to_flat_state(twice), nnx.to_flat_state(once), nnx.to_flat_state(again)):
        np.testing.assert_array_equal(np.asarray(x[...]), np.asarray(y[...]))
        np.testing.assert_array_equal(np.asarray(y[...]), np.asarray(z[...]))


def test_bypassed_layer_returns_its_input_exactly():
    model = tiny_model("llama", seed=7)
    masks = full_masks(model.config)
    masks = masks.replace(layers=masks.layers.at[1].set(0.0))
    _, inter = _masked_model(model, masks)(jnp.asarray(IDS), collect=True)
    np.testing.assert_array_equal(np.asarray(inter[1]["block_out"]), np.asarray(inter[1]["block_in"]))
    assert not np.array_equal(np.asarray(inter[0]["block_out"]), np.asarray(inter[0]["block_in"]))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("uniform", [True, False])
def test_compact_logits_equal_masked(family, uniform):
    model = tiny_model(family, seed=8)
    masks = random_masks(model.config, seed=9, uniform=uniform)
    small = compact(model, masks)
    masked_logits = np.asarray(_masked_model(model, masks)(jnp.asarray(IDS)))
    small_logits = np.asarray(small(jnp.asarray(IDS)))
    assert np.abs(masked_logits).max() > 1e-3  # not a degenerate model
    np.testing.assert_allclose(small_logits, masked_logits, rtol=1e-5, atol=1e-6)
    cfg = small.config
    assert cfg.num_layers == int(np.sum(np.asarray(masks.layers)))
    assert (len(set(cfg.layer_intermediate)) == 1) == uniform
    n = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(small, nnx.Param)))
    assert n == param_count(cfg) < param_count(model.config)


def test_uniform_compaction_exports_to_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from jaxlab.models import to_hf

    model = tiny_model("qwen2", seed=10)
    masks = random_masks(model.config, seed=11, uniform=True)
    masks = masks.replace(kv_heads=tuple(jnp.ones_like(k) for k in masks.kv_heads))  # same groups everywhere
    small = compact(model, masks)
    folder = to_hf(small, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert hf.config.intermediate_size == small.config.intermediate_size == 48 - 16
    assert hf.config.num_hidden_layers == 2 and hf.config.num_attention_heads == 2
    with torch.no_grad():
        ref = hf(torch.tensor(IDS.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(np.asarray(small(jnp.asarray(IDS))), ref, rtol=1e-4, atol=1e-4)


def test_non_uniform_stays_in_jaxlab_and_says_so(tmp_path):
    from jaxlab.models import to_hf

    model = tiny_model("llama", seed=12)
    small = compact(model, random_masks(model.config, seed=13, uniform=False))
    assert not small.config.is_uniform
    with pytest.raises(UnsupportedModelError, match="non-uniform.*loadable in jaxlab"):
        to_hf(small, tmp_path / "hf")


def test_unequal_heads_per_group_is_refused_naming_the_layer():
    model = tiny_model("llama", seed=14)
    masks = full_masks(model.config)
    heads = list(masks.heads)
    heads[2] = jnp.asarray([0.0, 1.0, 1.0, 1.0])  # group 0 keeps 1 head, group 1 keeps 2
    with pytest.raises(CompactionError, match=r"masks.heads\[2\]"):
        compact_config(model.config, masks.replace(heads=tuple(heads)))
    mlp = list(masks.mlp)
    mlp[0] = jnp.zeros_like(mlp[0])
    with pytest.raises(CompactionError, match=r"masks.mlp\[0\]"):
        compact_config(model.config, masks.replace(mlp=tuple(mlp)))
