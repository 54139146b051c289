"""The ``speed`` section: dense vs compacted model timed through experiments.bench.timing, FLOPs/token modelled."""

import json
import statistics

import numpy as np
import pytest
from flax import nnx

from experiments.ptl import runner
from experiments.ptl.speed import SpeedSection, format_speed, measure_speed
from jaxlab.config import load
from jaxlab.models import init_model, tiny_config
from jaxlab.transforms import compact, full_masks, prune_lowest, random_scores

FAST = SpeedSection(prompt_len=8, decode_lengths=(2, 4, 6), repeats=5)


def _matmul_flops(model) -> float:
    """Reference: 2 x every matmul weight actually in the model, plus the logits projection."""
    cfg = model.config
    sizes = [
        np.size(v[...])
        for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
        if path[-1] == "kernel" and "lm_head" not in path
    ]
    return 2.0 * (sum(sizes) + cfg.vocab_size * cfg.hidden_size)


def test_speed_section_is_checked():
    with pytest.raises(ValueError, match="decode_lengths"):
        SpeedSection(decode_lengths=(4, 4, 8))
    with pytest.raises(ValueError, match="repeats"):
        SpeedSection(repeats=2)


def test_measure_speed_dense_vs_compact():
    cfg = tiny_config("llama", num_layers=2, intermediate_size=64)
    dense = init_model(cfg, 0)
    small = compact(dense, prune_lowest(full_masks(cfg), "mlp", random_scores(cfg.layer_intermediate, 0), 32))
    speed = measure_speed(dense, small, FAST)
    assert small.config.intermediate_size == 32
    for name, model in (("dense", dense), ("compact", small)):
        assert speed[name]["flops_per_token"] == pytest.approx(_matmul_flops(model))
        prefill = speed[name]["prefill_tok_s"]
        assert prefill["value"] == pytest.approx(8 / statistics.median(speed["samples_s"][f"{name}/prefill"]))
        assert prefill["min"] <= prefill["value"] <= prefill["max"]
        assert len(speed["samples_s"][f"{name}/gen6"]) == 5
    assert (
        speed["flops_ratio"] == pytest.approx(_matmul_flops(small) / _matmul_flops(dense)) and speed["flops_ratio"] < 1
    )
    if speed["prefill_speedup"] is not None:  # None when either figure was noisy: no ratio of noise
        assert speed["prefill_speedup"] == pytest.approx(
            speed["compact"]["prefill_tok_s"]["value"] / speed["dense"]["prefill_tok_s"]["value"]
        )
    table = format_speed(speed)
    assert "| compact / dense |" in table and "modelled" in table


def test_runner_writes_the_speed_section(tmp_path):
    data = {
        "model": {"name": "tiny-llama"},
        "output_dir": str(tmp_path / "run"),
        "data": {
            "seq_len": 32,
            "batch_size": 2,
            "calib_batches": 1,
            "english_batches": 1,
            "eval_tokens": 64,
            "eval_batch_size": 2,
            "task_items": 0,
        },
        "schedule": {"stages": 1, "target": 0.5},
        "tune": {"steps": 1},
        "baselines": [],
        "progress": False,
        "export_hf": False,
        "compile_cache": False,
        "speed": {"prompt_len": 8, "decode_lengths": [2, 4, 6]},
    }
    summary = runner.run(load(runner.Config, None, [], data=data))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["speed"]
    assert saved["compact"]["params"] == summary["rows"][-1]["params"] < saved["dense"]["params"]
    assert saved["setting"]["decode_lengths"] == [2, 4, 6] and saved["flops_ratio"] < 1
    assert "Speed (measured tok/s" in (tmp_path / "run" / "results.md").read_text()
    with pytest.raises(Exception, match="speed.prompt_len"):
        runner.run(load(runner.Config, None, ["speed.prompt_len=600", f"output_dir={tmp_path / 'bad'}"], data=data))
