"""Tensorstore collections: round trip, one-layer reads, and resume after a kill at any point of a batch."""

import json

import numpy as np
import pytest
from test_neuron_stats import padded_rows
from tx_helpers import tiny_model

from jaxlab.transforms import (
    NeuronStore,
    activation_probabilities,
    collect_neuron_stats,
    collect_to_store,
    lape_detect,
    plnd_detect,
)
from jaxlab.transforms import neuron_store as store_mod

KEYS = ("sample_ffn", "sample_qk", "sample_vo", "sample_tokens")


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=7, num_layers=3)


def batches(n=4, seed=8):
    out = []
    for i in range(n):
        ids, mask = padded_rows(3, seed=seed + i, seq=10)
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def dying(items, after):
    """The same batches, but the process 'dies' when batch ``after`` is requested."""
    for i, b in enumerate(items):
        if i == after:
            raise Killed
        yield b


def assert_same(store, want):
    for key in KEYS:
        np.testing.assert_array_equal(store.samples(key), np.asarray(want[key], store.samples(key).dtype), key)
    sums = store.sums()
    for key in ("ffn_importance", "act_count", "qk_score", "vo_score", "tokens"):
        np.testing.assert_allclose(sums[key], want[key], rtol=1e-12, err_msg=key)


def test_round_trip_and_partial_layer_read(model, tmp_path):
    data = batches()
    want = collect_neuron_stats(model, data)
    store = collect_to_store(model, data, tmp_path / "en", sample_chunk=4)
    assert store.cursor["batches"] == 4 and store.num_samples == len(want["sample_tokens"])
    assert_same(NeuronStore(tmp_path / "en"), want)
    reopened = NeuronStore(tmp_path / "en")
    np.testing.assert_array_equal(reopened.samples("sample_ffn", layer=1), want["sample_ffn"][:, 1])
    np.testing.assert_allclose(reopened.sums(layer=2)["qk_score"], want["qk_score"][2], rtol=1e-12)
    # Chunked per layer: a chunk never spans two layers, so one layer reads alone.
    zarray = json.loads((tmp_path / "en" / "samples" / "sample_ffn" / ".zarray").read_text())
    assert zarray["chunks"] == [4, 1, want["sample_ffn"].shape[-1]]
    with pytest.raises(ValueError, match="layer"):
        reopened.samples("sample_ffn", layer=3)
    # Detection reads the store one layer at a time and gets what the in-memory arrays give.
    other = collect_neuron_stats(model, batches(seed=30))
    from_store = plnd_detect({"en": reopened, "fr": other}, ratio=0.1)
    from_arrays = plnd_detect({"en": want, "fr": other}, ratio=0.1)
    assert from_store.kinds() == ("ffn", "qk", "vo")
    for kind in from_store.kinds():
        np.testing.assert_array_equal(from_store.get(kind), from_arrays.get(kind), kind)
    probs = activation_probabilities({"en": reopened, "fr": other})
    np.testing.assert_allclose(probs["en"], want["act_count"] / want["tokens"])
    lape = lape_detect(probs, top_rate=0.05)
    assert lape.ffn.shape == (2, 3, want["act_count"].shape[1]) and lape.ffn.any()


def test_resume_after_kill_between_batches(model, tmp_path):
    data = batches()
    want = collect_neuron_stats(model, data)
    with pytest.raises(Killed):
        collect_to_store(model, dying(data, after=2), tmp_path / "fr")
    assert NeuronStore(tmp_path / "fr").cursor["batches"] == 2
    store = collect_to_store(model, iter(data), tmp_path / "fr")
    assert store.cursor["batches"] == 4
    assert_same(store, want)


def test_resume_after_kill_inside_a_batch(model, tmp_path, monkeypatch):
    """Killed after batch 3's rows and sums are written but before its cursor: batch 3 is redone, once."""
    data = batches()
    want = collect_neuron_stats(model, data)
    real = store_mod._atomic_json
    calls = {"cursor": 0}

    def flaky(path, value):
        if path.name == "cursor.json":
            calls["cursor"] += 1
            if calls["cursor"] == 4:  # 1 = creation, 2/3 = batches 1/2, 4 = batch 3
                raise Killed
        real(path, value)

    monkeypatch.setattr(store_mod, "_atomic_json", flaky)
    with pytest.raises(Killed):
        collect_to_store(model, data, tmp_path / "de")
    monkeypatch.setattr(store_mod, "_atomic_json", real)
    half = NeuronStore(tmp_path / "de")
    assert half.cursor["batches"] == 2
    # The killed batch left rows past the cursor and sums in the other slot; readers see neither.
    assert half.num_samples < half._samples["sample_ffn"].shape[0]
    np.testing.assert_allclose(half.sums()["tokens"], sum(b["attention_mask"].sum() for b in data[:2]))
    assert_same(collect_to_store(model, data, tmp_path / "de"), want)


def test_refuses_to_mix_collections(model, tmp_path):
    data = batches(n=1)
    collect_to_store(model, data, tmp_path / "sw")
    with pytest.raises(FileExistsError, match="resume=False"):
        collect_to_store(model, data, tmp_path / "sw", resume=False)
    other = tiny_model("llama", seed=7, num_layers=2)
    with pytest.raises(ValueError, match="made for"):
        collect_to_store(other, data, tmp_path / "sw")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        NeuronStore(tmp_path / "missing")
