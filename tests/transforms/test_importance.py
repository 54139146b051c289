"""Importance scores vs slow eager references on random tiny models, and hand-checkable cases."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tx_helpers import calib_batches, random_masks, tiny_model

from jaxlab.train.loss import masked_cross_entropy
from jaxlab.transforms import (
    apply_masks,
    compact,
    full_masks,
    head_scores,
    kv_head_scores,
    layer_scores,
    mlp_scores,
    prune_lowest,
    ptl_scores,
    unit_scores,
)


def _np(x):
    return np.asarray(x, np.float64)


def _collect(model, batches):
    """Eager forward per batch: per-layer intermediates and the token weights."""
    out = []
    for b in batches:
        _, inter = model(jnp.asarray(b["input_ids"]), collect=True)
        out.append(([{k: _np(v) for k, v in layer.items()} for layer in inter], _np(b["loss_mask"])))
    return out


def _w(model, i, *path):
    node = model.layers[i]
    for p in path:
        node = getattr(node, p)
    return _np(node.kernel[...])


def test_mlp_activation_and_wanda_match_token_loop():
    model, batches = tiny_model("qwen3", seed=1), calib_batches(seed=2)
    act = mlp_scores(model, "activation", batches)
    wanda = mlp_scores(model, "wanda", batches)
    for i in range(model.config.num_layers):
        f = model.config.layer_intermediate[i]
        abs_sum, sq_sum, count = np.zeros(f), np.zeros(f), 0.0
        for inter, w in _collect(model, batches):
            for b in range(w.shape[0]):
                for s in range(w.shape[1]):
                    if w[b, s]:
                        a = inter[i]["act"][b, s]
                        abs_sum += np.abs(a)
                        sq_sum += a * a
                        count += 1
        np.testing.assert_allclose(act[i], abs_sum / count, rtol=1e-5)
        down = np.abs(_w(model, i, "mlp", "down_proj")).sum(1)
        np.testing.assert_allclose(wanda[i], np.sqrt(sq_sum) * down, rtol=1e-5)


def test_mlp_magnitude_by_hand():
    model = tiny_model("llama", seed=3)
    scores = mlp_scores(model, "magnitude")
    i, j = 1, 5
    ref = (
        np.abs(_w(model, i, "mlp", "gate_proj")[:, j]).sum()
        + np.abs(_w(model, i, "mlp", "up_proj")[:, j]).sum()
        + np.abs(_w(model, i, "mlp", "down_proj")[j]).sum()
    )
    np.testing.assert_allclose(scores[i][j], ref, rtol=1e-6)


def _eager_grads(model, batches):
    """Reference gradient of the token-mean loss, one eager nnx.grad per batch."""

    def loss(m, b):
        s, _ = masked_cross_entropy(
            m(jnp.asarray(b["input_ids"])), jnp.asarray(b["targets"]), jnp.asarray(b["loss_mask"])
        )
        return s

    total = float(sum(np.sum(b["loss_mask"]) for b in batches))
    grads = [nnx.jit(nnx.grad(loss))(model, b) for b in batches]
    return lambda i, *path: sum(_np(_get(g, i, path)) for g in grads) / total


def _get(g, i, path):
    node = g["layers"][i]
    for p in path:
        node = node[p]
    return node["kernel"][...]


def test_taylor_matches_eager_gradients():
    model, batches = tiny_model("qwen2", seed=4), calib_batches(n=1, seed=5)
    neurons = mlp_scores(model, "taylor", batches)
    heads = head_scores(model, "taylor", batches)
    g = _eager_grads(model, batches)
    hd = model.config.head_dim
    for i in range(model.config.num_layers):
        ref = (
            np.abs(_w(model, i, "mlp", "gate_proj") * g(i, "mlp", "gate_proj")).sum(0)
            + np.abs(_w(model, i, "mlp", "up_proj") * g(i, "mlp", "up_proj")).sum(0)
            + np.abs(_w(model, i, "mlp", "down_proj") * g(i, "mlp", "down_proj")).sum(1)
        )
        np.testing.assert_allclose(neurons[i], ref, rtol=2e-4, atol=1e-9)
        q = np.abs(_w(model, i, "attn", "q_proj") * g(i, "attn", "q_proj"))
        o = np.abs(_w(model, i, "attn", "o_proj") * g(i, "attn", "o_proj"))
        ref_h = [q[:, h * hd : (h + 1) * hd].sum() + o[h * hd : (h + 1) * hd].sum() for h in range(4)]
        np.testing.assert_allclose(heads[i], ref_h, rtol=2e-4, atol=1e-9)


def test_head_activation_and_kv_group_sums():
    model, batches = tiny_model("llama", seed=6), calib_batches(seed=7)
    act = head_scores(model, "activation", batches)
    kv = kv_head_scores(model, "activation", batches)
    collected = _collect(model, batches)
    hd = model.config.head_dim
    for i in range(model.config.num_layers):
        num = sum(np.einsum("bs,bshd->h", w, np.abs(inter[i]["heads"])) for inter, w in collected)
        count = sum(w.sum() for _, w in collected)
        np.testing.assert_allclose(act[i], num / (count * hd), rtol=1e-5)
        np.testing.assert_allclose(kv[i], [act[i][0] + act[i][1], act[i][2] + act[i][3]], rtol=1e-6)


def test_ptl_scores_by_hand():
    task = np.array([[-3.0, -2.0, 5.0, 1.0], [-1.0, -4.0, 2.0, 3.0]])
    eng = np.array([[9.0, 0.0, 8.0, 1.0], [7.0, 1.0, 6.0, 0.0]])
    sig = lambda a: {"gate": a, "up": a, "act": a}  # noqa: E731
    s = ptl_scores(sig(task), sig(eng), np.ones(4), top_frac=0.5, signed=True)
    # task set {0,1} (lowest 2 on both samples), English set {0,2}: only neuron 1 is deleted by all 3 signals;
    # 0 and 2 are protected by all 3; ties then go by mean task |act| [2, 3, 3.5, 2] (ranks 0, 2, 3, 1).
    np.testing.assert_allclose(s, [48 + 12 + 0.0, 0.5, 48 + 12 + 0.75, 48 + 0.25])
    assert list(np.argsort(s)) == [1, 3, 0, 2]
    # a pruned neuron never enters the task set, and top_n counts kept neurons only
    s2 = ptl_scores(sig(task), sig(eng), np.array([1.0, 0.0, 1.0, 1.0]), top_frac=0.5, signed=True)
    assert s2[1] == 48.0 + 0.5  # the pruned neuron gets no deletion vote and no protection
    assert s2[0] == 60.0  # in the task set now, but English-protected on every signal
    # by magnitude: |task| = [[3,2,5,1],[1,4,2,3]] -> weakest-2 sets {3,1} and {0,2}: empty intersection;
    # |eng| strongest-2 {0,2} on both -> no deletion votes, 0 and 2 protected
    m = ptl_scores(sig(task), sig(eng), np.ones(4), top_frac=0.5)
    np.testing.assert_allclose(m, [48 + 12 + 0.0, 48 + 0.5, 48 + 12 + 0.75, 48 + 0.25])


def test_ptl_criterion_uses_last_token_values():
    model = tiny_model("llama", seed=8)
    task, eng = calib_batches(seed=9), calib_batches(seed=10)
    scores = mlp_scores(model, "ptl", task, english=eng, top_frac=0.6)

    def last(batches):
        rows = {k: [] for k in ("gate", "up", "act")}
        for inter, w in _collect(model, batches):
            for b in range(w.shape[0]):
                pos = int(np.flatnonzero(w[b])[-1])
                for k in rows:
                    rows[k].append([layer[k][b, pos] for layer in inter])
        return {k: np.array(v) for k, v in rows.items()}  # [N, L, F]

    t, e = last(task), last(eng)
    for i in range(model.config.num_layers):
        ref = ptl_scores(
            {k: v[:, i] for k, v in t.items()}, {k: v[:, i] for k, v in e.items()}, np.ones(48), top_frac=0.6
        )
        np.testing.assert_allclose(scores[i], ref, rtol=1e-6, atol=1e-6)


def test_layer_scores_match_references():
    model, batches = tiny_model("qwen3", seed=11), calib_batches(seed=12)
    bi = layer_scores(model, "block_influence", batches)
    skip = layer_scores(model, "skip_loss", batches)
    collected = _collect(model, batches)
    for i in range(model.config.num_layers):
        num, count = 0.0, 0.0
        for inter, w in collected:
            x, y = inter[i]["block_in"], inter[i]["block_out"]
            cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
            num += (w * (1 - cos)).sum()
            count += w.sum()
        np.testing.assert_allclose(bi[i], num / count, rtol=1e-4)

    def mean_loss(m):
        s = [
            masked_cross_entropy(m(jnp.asarray(b["input_ids"])), jnp.asarray(b["targets"]), jnp.asarray(b["loss_mask"]))
            for b in batches
        ]
        return float(sum(a for a, _ in s) / sum(n for _, n in s))

    base = mean_loss(model)
    for i in range(model.config.num_layers):  # reference: physically drop the layer
        m = full_masks(model.config)
        dropped = compact(model, m.replace(layers=m.layers.at[i].set(0.0)))
        np.testing.assert_allclose(skip[i], mean_loss(dropped) - base, rtol=1e-3, atol=1e-5)


def test_masked_units_score_zero_and_are_not_reselected():
    model, batches = tiny_model("llama", seed=13), calib_batches(seed=14)
    masks = random_masks(model.config, seed=15, heads=False, drop_layer=False)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    split = (graphdef, apply_masks(params, masks, model.config.head_dim), rest)
    scores = unit_scores(split, "mlp", "activation", batches, masks=masks)
    for s, keep in zip(scores, masks.mlp):
        assert np.all(s[np.asarray(keep) == 0] == 0) and np.all(s[np.asarray(keep) == 1] > 0)
    before = [int(np.sum(k)) for k in masks.mlp]
    after = prune_lowest(masks, "mlp", scores, 3)
    assert [int(np.sum(k)) for k in after.mlp] == [b - 3 for b in before]
    for s, old, new in zip(scores, masks.mlp, after.mlp):
        gone = (np.asarray(old) == 1) & (np.asarray(new) == 0)
        alive = np.asarray(new) == 1
        assert s[gone].max() <= s[alive].min()


@pytest.mark.parametrize("unit,criterion", [("mlp", "block_influence"), ("layers", "wanda"), ("heads", "ptl")])
def test_unknown_criterion_names_it(unit, criterion):
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=f"criterion: '{criterion}'"):
        unit_scores(model, unit, criterion, calib_batches())


def test_ptl_seed_exact_takes_first_candidates_by_index():
    from jaxlab.transforms import ptl_candidates, ptl_seed_exact_scores

    sig = lambda a: {"gate": a, "up": a, "act": a}  # noqa: E731
    task = np.array([[-3.0, -2.0, 5.0, 1.0, -9.0, -8.0], [-1.0, -4.0, 2.0, 3.0, -7.0, -6.0]])
    eng = np.array([[9.0, 0.0, 8.0, 1.0, 0.0, 0.0], [7.0, 1.0, 6.0, 0.0, 0.0, 0.0]])
    # top_n = 4: task set = {0, 1, 4, 5} (lowest 4 on both, signed); English set = {0, 2, 3?}: highest 4 of
    # [9,0,8,1,0,0] by stable order -> {0, 2, 3, 1}; of [7,1,6,0,0,0] -> {0, 2, 1, 3}; common {0, 1, 2, 3}
    cand = ptl_candidates(sig(task), sig(eng), np.ones(6), top_n=4)
    assert list(np.flatnonzero(cand)) == [4, 5]
    s = ptl_seed_exact_scores(sig(task), sig(eng), np.ones(6), top_frac=4 / 6, n_remove=2)
    assert list(np.argsort(s, kind="stable")[:2]) == [4, 5]
    # the union over signals: a neuron deleted by one signal alone is a candidate
    t2 = {"gate": task, "up": task, "act": np.array([[0, 0, 0, 0, 5.0, 5.0]] * 2) + np.arange(6) * 0.0}
    t2["act"][:, 3] = -50.0
    c2 = ptl_candidates(t2, sig(eng), np.ones(6), top_n=4)
    assert list(np.flatnonzero(c2)) == [4, 5]  # 3 is English-protected on act as well
    e2 = {**sig(eng), "act": np.where(np.arange(6) == 3, -1.0, eng)}
    c3 = ptl_candidates(t2, e2, np.ones(6), top_n=4)
    assert list(np.flatnonzero(c3)) == [3, 4, 5]  # 3 is deleted by the act signal alone: union over signals
    # pruned neurons are never candidates, and candidates come first in index order
    keep = np.array([1, 1, 1, 1, 0, 1.0])
    s3 = ptl_seed_exact_scores(sig(task), sig(eng), keep, top_frac=0.8, n_remove=1)
    assert not ptl_candidates(sig(task), sig(eng), keep, top_n=4)[4]
    assert int(np.argmin(np.where(keep > 0, s3, np.inf))) == 5
    with pytest.raises(ValueError, match=r"seed_exact: layer 3 has 2 deletion candidates .* fewer than the 3"):
        ptl_seed_exact_scores(sig(task), sig(eng), np.ones(6), top_frac=4 / 6, n_remove=3, layer=3)


def test_seed_exact_through_mlp_scores_and_random_criterion():
    from jaxlab.transforms import random_scores

    model, batches = tiny_model("llama", seed=21), calib_batches(seed=22)
    with pytest.raises(ValueError, match="seed_exact: layer 0 has"):
        mlp_scores(model, "ptl", batches, english=batches, top_frac=0.5, select="seed_exact", n_remove=10_000)
    s = mlp_scores(model, "ptl", batches, english=calib_batches(seed=23), top_frac=0.9, select="seed_exact", n_remove=0)
    width = model.config.layer_intermediate[0]
    for v in s:  # candidates score their index, everyone else index + width
        assert v.shape == (width,) and np.all((v == np.arange(width)) | (v == np.arange(width) + width))
    with pytest.raises(ValueError, match="ptl_select"):
        mlp_scores(model, "ptl", batches, english=batches, select="bogus")
    a, b = random_scores([5, 7], seed=1), random_scores([5, 7], seed=1)
    assert [sorted(x) for x in a] == [list(range(5)), list(range(7))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(random_scores([50], 1)[0], random_scores([50], 2)[0])
    r = unit_scores(model, "mlp", "random", seed=3)
    assert len(r) == model.config.num_layers and sorted(r[0]) == list(range(width))
    layers = unit_scores(model, "layers", "random", seed=3)
    assert sorted(layers) == list(range(model.config.num_layers))
    assert np.array_equal(
        unit_scores(model, "kv_heads", "random", seed=4)[0], random_scores([model.config.layer_kv_heads[0]], 4)[0]
    )
