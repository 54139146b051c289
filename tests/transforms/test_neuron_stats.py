"""Streaming neuron statistics equal a slow per-sample numpy reference; batching and data sharding do not matter."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from ln_reference import reference
from tx_helpers import tiny_model

from jaxlab.models import tiny_config
from jaxlab.sharding import MeshConfig, batch_sharding, make_mesh
from jaxlab.transforms import activation_probability, collect_neuron_stats, sample_batches
from jaxlab.transforms.neuron_stats import check_model

SEQ = 12


def padded_rows(n_rows, seed, seq=SEQ):
    """Random token rows with right padding, left padding and one all-padding row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 256, (n_rows, seq)).astype(np.int32)
    mask = np.ones((n_rows, seq), np.int32)
    for r in range(n_rows):
        kind = r % 4
        n = int(rng.integers(3, seq))
        if kind == 1:
            mask[r, n:] = 0
        elif kind == 2:
            mask[r, : seq - n] = 0
        elif kind == 3 and r == n_rows - 1:
            mask[r] = 0
    return ids, mask


def reference_stats(model, ids, mask):
    per = [reference(model, row[m > 0])[1] for row, m in zip(ids, mask) if m.sum()]
    sums = {k: sum(p[k] for p in per) for k in per[0]}
    samples = {
        f"sample_{k}": np.stack([p[v] for p in per])
        for k, v in (("ffn", "ffn_importance"), ("qk", "qk_score"), ("vo", "vo_score"))
    }
    return sums, samples, np.array([m.sum() for m in mask if m.sum()])


def check_close(got, want, name):
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("family,overrides", [("llama", {}), ("qwen3", {}), ("mistral", {"sliding_window": 5})])
def test_streaming_stats_equal_numpy_reference(family, overrides):
    model = tiny_model(family, seed=1, num_layers=2, **overrides)
    ids, mask = padded_rows(4, seed=2)
    got = collect_neuron_stats(model, [{"input_ids": ids, "attention_mask": mask}])
    sums, samples, tokens = reference_stats(model, ids, mask)
    assert got["tokens"] == mask.sum() and got["sample_tokens"].tolist() == tokens.tolist()
    np.testing.assert_array_equal(got["act_count"], sums["act_count"])
    for key in ("ffn_importance", "qk_score", "vo_score"):
        check_close(got[key], sums[key], key)
    for key, want in samples.items():
        assert got[key].shape == want.shape == (len(tokens), 2, want.shape[-1])
        check_close(got[key], want, key)
    assert np.all(got["qk_score"] > 0)
    prob = activation_probability(got["act_count"], got["tokens"])
    np.testing.assert_allclose(prob, sums["act_count"] / mask.sum())


def test_many_batches_equal_one_big_batch():
    model = tiny_model("qwen2", seed=3, num_layers=2)
    ids, mask = padded_rows(6, seed=4)
    whole = collect_neuron_stats(model, [{"input_ids": ids, "attention_mask": mask}])
    # Three batches, each cut to its own real length (the padding width changes too).
    parts = []
    for a in range(0, 6, 2):
        m = mask[a : a + 2]
        width = max(int(np.flatnonzero(m.any(0)).max()) + 1, 1)
        parts.append({"input_ids": ids[a : a + 2, :width], "attention_mask": m[:, :width]})
    split = collect_neuron_stats(model, parts)
    assert split["tokens"] == whole["tokens"]
    np.testing.assert_array_equal(split["act_count"], whole["act_count"])
    np.testing.assert_array_equal(split["sample_tokens"], whole["sample_tokens"])
    for key in ("ffn_importance", "qk_score", "vo_score", "sample_ffn", "sample_qk", "sample_vo"):
        np.testing.assert_allclose(split[key], whole[key], rtol=1e-5, atol=1e-6 * np.abs(whole[key]).max(), err_msg=key)


def test_sharded_over_data_axis_gives_the_same_numbers():
    model = tiny_model("llama", seed=5, num_layers=2)
    ids, mask = padded_rows(8, seed=6)
    batch = [{"input_ids": ids, "attention_mask": mask}]
    plain = collect_neuron_stats(model, batch)
    mesh = make_mesh(MeshConfig(data=8))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    replicated = NamedSharding(mesh, PartitionSpec())
    params, rest = jax.device_put(params, replicated), jax.device_put(rest, replicated)
    sharded = collect_neuron_stats((graphdef, params, rest), batch, sharding=batch_sharding(mesh))
    for key, want in plain.items():
        np.testing.assert_allclose(sharded[key], want, rtol=1e-5, atol=1e-6 * max(np.abs(want).max(), 1), err_msg=key)


def test_unsupported_models_and_empty_input_are_refused():
    with pytest.raises(ValueError, match="model.moe"):
        check_model(tiny_config("mixtral"))
    with pytest.raises(ValueError, match="model.layer_intermediate"):
        check_model(tiny_config("llama", num_layers=2, intermediate_size=(128, 64)))
    model = tiny_model("llama", seed=0, num_layers=1)
    with pytest.raises(ValueError, match="batches"):
        collect_neuron_stats(
            model, [{"input_ids": np.zeros((1, 4), np.int32), "attention_mask": np.zeros((1, 4), np.int32)}]
        )
    with pytest.raises(ValueError, match="input_ids"):
        collect_neuron_stats(model, [{"tokens": np.zeros((1, 4), np.int32)}])


def test_sample_batches_pad_cut_and_fill():
    rng = np.random.default_rng(9)
    samples = [rng.integers(1, 256, n) for n in (3, 20, 7, 1, 30)]
    small = list(sample_batches(samples, batch_size=2, cutoff=25, multiple=8))
    assert [b["input_ids"].shape for b in small] == [(2, 24), (2, 8), (2, 32)]
    assert [b["attention_mask"].sum(1).tolist() for b in small] == [[3, 20], [7, 1], [25, 0]]
    np.testing.assert_array_equal(small[2]["input_ids"][0, :25], samples[4][:25])
    model = tiny_model("llama", seed=10, num_layers=1)
    a = collect_neuron_stats(model, small)
    b = collect_neuron_stats(model, sample_batches(samples, batch_size=5, cutoff=25, multiple=8))
    np.testing.assert_array_equal(a["sample_tokens"], [3, 20, 7, 1, 25])
    for key in ("sample_ffn", "sample_qk", "act_count"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6 * np.abs(b[key]).max(), err_msg=key)
    with pytest.raises(ValueError, match=r"samples\[1\]"):
        list(sample_batches([[1], []], batch_size=2))
