"""PTL on a device mesh (data=2 x fsdp=4 over the 8 fake CPU devices) equals the single-device run."""

import jax
import numpy as np
import pytest

from experiments.ptl import runner, tune
from jaxlab.train.trainer import fit
from jaxlab.config import ConfigError, load

CFG = {
    "model": {"name": "tiny-llama"},
    "data": {
        "seq_len": 32,
        "batch_size": 8,
        "calib_batches": 1,
        "english_batches": 1,
        "eval_tokens": 256,
        "eval_batch_size": 8,
        "task_items": 0,
    },
    "schedule": {"stages": 2, "target": 0.5, "criterion": "wanda"},
    "tune": {"steps": 2, "learning_rate": 0.002},
    "baselines": [],
    "progress": False,
    "speed": {"enabled": False},
    "export_hf": True,
    "compile_cache": False,
}


def _run(tmp_path, name, **extra):
    return runner.run(load(runner.Config, None, [], data={**CFG, "output_dir": str(tmp_path / name), **extra}))


def test_mesh_run_matches_single_device(tmp_path, monkeypatch):
    assert len(jax.devices()) == 8
    one = _run(tmp_path, "one")
    seen = []

    def spy(model, *args, **kwargs):  # the tune steps get the mesh, and start from sharded weights
        seen.append((kwargs["mesh"], model.embed.embedding[...].sharding))
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(tune, "fit", spy)
    mesh = _run(tmp_path, "mesh", mesh={"data": 2, "fsdp": 4})
    assert len(seen) == 2 and all(dict(m.shape)["fsdp"] == 4 for m, _ in seen)
    assert all(len(sh.device_set) == 8 and not sh.is_fully_replicated for _, sh in seen)
    assert mesh["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1, "expert": 1} and one["mesh"] is None
    assert mesh["ptl_pruned"] == one["ptl_pruned"]  # same neurons removed at every stage's end
    assert [len(p) for p in one["ptl_pruned"]["mlp"]] == [48] * 4
    for a, b in zip(one["rows"], mesh["rows"]):
        assert (a["track"], a["stage"], a["params"]) == (b["track"], b["stage"], b["params"])
        np.testing.assert_allclose(b["code_ppl"], a["code_ppl"], rtol=1e-4)
        np.testing.assert_allclose(b["text_ppl"], a["text_ppl"], rtol=1e-4)
        if a["stage"]:
            steps = [s for s, _ in a["tune_losses"]]
            assert steps == [s for s, _ in b["tune_losses"]] == [1, 2]
            np.testing.assert_allclose([v for _, v in b["tune_losses"]], [v for _, v in a["tune_losses"]], rtol=1e-4)
    assert mesh["export"]["config"] == one["export"]["config"]
    # both exports (compacted on device, sharded or not) load in transformers, the path lm-eval's `hf` model uses
    import torch
    import transformers

    ids = torch.tensor([[1, 5, 9, 33, 70, 2]])
    logits = []
    for run in (one, mesh):
        hf = transformers.AutoModelForCausalLM.from_pretrained(run["export"]["path"], dtype=torch.float32).eval()
        assert hf.config.intermediate_size == 48 and hf.config.num_hidden_layers == 4
        with torch.inference_mode():
            logits.append(hf(ids).logits.numpy())
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-3, atol=3e-4)  # 4 Adam steps amplify f32 reordering


def test_mesh_larger_than_the_devices_fails_before_work(tmp_path):
    with pytest.raises(ConfigError, match=r"mesh: shape .* needs 16 devices"):
        _run(tmp_path, "big", mesh={"data": 2, "fsdp": 8})
    assert not (tmp_path / "big").exists()
