"""PLND and LAPE recover planted sets exactly and match slow references on random inputs."""

import numpy as np
import pytest
import torch

from jaxlab.transforms import LanguageSets, detector_overlap, jaccard, lape_detect, plnd_detect, plnd_sets

LANGS = ("en", "zh", "sw")


def planted_plnd(seed=0, n=8, layers=3, width=200, ratio=0.05):
    """Scores where each language's top-k of every sample is its planted set plus per-sample decoys."""
    rng = np.random.default_rng(seed)
    k = int(ratio * width)
    common = {layer: rng.choice(width, 3, replace=False) for layer in range(layers)}
    per_lang, truth = {}, np.zeros((len(LANGS), layers, width), bool)
    for j, lang in enumerate(LANGS):
        scores = rng.random((n, layers, width))
        for layer in range(layers):
            free = np.setdiff1d(np.arange(width), common[layer])
            own = rng.choice(free, 2 + j, replace=False)
            planted = np.concatenate([common[layer], own])
            truth[j, layer, planted] = True
            rest = np.setdiff1d(np.arange(width), planted)
            for s in range(n):  # decoys: in this sample's top-k only (distinct across samples)
                decoys = rest[(np.arange(k - len(planted)) + s * (k - len(planted))) % len(rest)]
                scores[s, layer, decoys] = 1.5
            scores[:, layer, planted] = 2.0 + rng.random((n, len(planted)))
        per_lang[lang] = {"sample_ffn": scores}
    shared = np.zeros((layers, width), bool)
    for layer, units in common.items():
        shared[layer, units] = True
    return per_lang, truth, shared


def test_plnd_recovers_planted_sets(tmp_path):
    per_lang, truth, shared = planted_plnd()
    sets = plnd_detect(per_lang, ratio=0.05, kinds=("ffn",))
    np.testing.assert_array_equal(sets.ffn, truth)
    np.testing.assert_array_equal(sets.shared(), shared)
    np.testing.assert_array_equal(sets.exclusive(), truth & ~shared[None])
    sets.save(tmp_path / "plnd.npz")
    back = LanguageSets.load(tmp_path / "plnd.npz")
    assert back.langs == LANGS and back.method == "plnd" and back.kinds() == ("ffn",)
    np.testing.assert_array_equal(back.ffn, sets.ffn)
    summary = sets.summary()["ffn"]
    assert summary["shared"] == [3, 3, 3]
    assert summary["exclusive"] == {"en": [2] * 3, "zh": [3] * 3, "sw": [4] * 3}
    assert summary["shared_share"] == pytest.approx((3 / truth.any(0).sum(-1)).tolist())


def slow_plnd(scores, ratio):
    """The per-sample top-k intersection with Python sets (the released code's structure)."""
    n, layers, width = scores.shape
    k = int(ratio * width)
    out = np.zeros((layers, width), bool)
    for layer in range(layers):
        tops = [set(sorted(range(width), key=lambda u: (-scores[s, layer, u], u))[:k]) for s in range(n)]
        out[layer, list(set.intersection(*tops))] = True
    return out


@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.3])
def test_plnd_matches_slow_reference_on_random_scores(ratio):
    rng = np.random.default_rng(1)
    base = rng.random((1, 2, 300))
    scores = base + 0.3 * rng.random((5, 2, 300))  # correlated samples so intersections are non-empty
    got = plnd_sets(scores, ratio=ratio)
    np.testing.assert_array_equal(got, slow_plnd(scores, ratio))
    assert ratio < 0.05 or got.any()
    reader = plnd_sets(lambda layer: scores[:, layer], num_layers=2, ratio=ratio)
    np.testing.assert_array_equal(reader, got)


def torch_lape(probs, top_rate=0.01, filter_rate=0.95, bar_ratio=0.95):
    """The anchor's identify.py procedure written with the same torch ops, on ``[L, F, Lang]``."""
    p = torch.tensor(probs, dtype=torch.float64)
    normed = p / p.sum(-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    logs = torch.where(normed > 0, normed.log(), 0)
    entropy = -(normed * logs).sum(-1)
    flat = p.flatten()
    top = flat.kthvalue(round(len(flat) * filter_rate)).values.item()
    entropy[(p > top).sum(-1) == 0] = torch.inf
    _, index = entropy.flatten().topk(round(entropy.numel() * top_rate), largest=False)
    rows, cols = index // entropy.size(1), index % entropy.size(1)
    bar = flat.kthvalue(round(len(flat) * bar_ratio)).values.item()
    lang, which = torch.where(p[rows, cols].T > bar)
    out = np.zeros((p.shape[-1],) + tuple(p.shape[:2]), bool)
    out[lang.numpy(), rows[which].numpy(), cols[which].numpy()] = True
    return out


@pytest.mark.parametrize("top_rate", [0.01, 0.05])
def test_lape_matches_torch_reference_on_random_probabilities(top_rate):
    rng = np.random.default_rng(2)
    probs = rng.random((4, 3, 400)) ** 3  # [Lang, L, F], skewed so some neurons are language-specific
    probs[:, 0, :5] = 0.0  # dead neurons (0/0 normalisation) must be handled like the anchor
    got = lape_detect(probs, LANGS + ("fr",), top_rate=top_rate)
    want = torch_lape(np.moveaxis(probs, 0, -1), top_rate=top_rate)
    np.testing.assert_array_equal(got.ffn, want)
    assert got.ffn.any()


def test_lape_recovers_planted_sets():
    rng = np.random.default_rng(3)
    layers, width = 2, 500
    probs = rng.uniform(0.2, 0.4, (len(LANGS), layers, width))
    n_keep = round(layers * width * 0.01)
    flat = rng.choice(layers * width, n_keep, replace=False)
    truth = np.zeros_like(probs, bool)
    for t, f in enumerate(flat):
        layer, unit = divmod(int(f), width)
        langs = [t % 3] if t % 2 == 0 else [t % 3, (t + 1) % 3]  # exclusive and two-language neurons
        probs[:, layer, unit] = 0.01
        probs[langs, layer, unit] = 0.9
        truth[langs, layer, unit] = True
    sets = lape_detect({lang: probs[j] for j, lang in enumerate(LANGS)})
    np.testing.assert_array_equal(sets.ffn, truth)
    assert not sets.shared().any() and sets.method == "lape"


def test_jaccard_and_detector_overlap_match_python_sets():
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 2, 50)) < 0.3, rng.random((3, 2, 50)) < 0.3
    sa = LanguageSets(LANGS, a, method="plnd")
    sb = LanguageSets(LANGS, b, method="lape")
    over = detector_overlap(sa, sb)
    for j, lang in enumerate(LANGS):
        x, y = set(zip(*np.nonzero(a[j]))), set(zip(*np.nonzero(b[j])))
        assert over["per_lang"][lang] == pytest.approx(len(x & y) / len(x | y))
        for layer in range(2):
            xl, yl = set(np.flatnonzero(a[j, layer])), set(np.flatnonzero(b[j, layer]))
            assert over["per_lang_layer"][lang][layer] == pytest.approx(len(xl & yl) / len(xl | yl))
    assert jaccard(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        jaccard(a, b[:, :1])


def test_bad_input_is_refused_with_the_field_name():
    with pytest.raises(ValueError, match="ratio"):
        plnd_sets(np.ones((2, 1, 10)), ratio=0.0)
    with pytest.raises(ValueError, match="act_prob"):
        lape_detect(np.full((2, 1, 10), 1.5), ("en", "zh"))
    with pytest.raises(ValueError, match="langs"):
        lape_detect(np.full((2, 1, 10), 0.5), ("en",))
    with pytest.raises(ValueError, match="ffn"):
        LanguageSets(("en",), np.ones((2, 1, 3), bool))
    with pytest.raises(ValueError, match="kind"):
        LanguageSets(("en",), np.ones((1, 1, 3), bool)).get("qk")
