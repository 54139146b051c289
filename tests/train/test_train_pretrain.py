"""The pretraining runner: config validation, outputs under output_dir, resume."""

import json
from pathlib import Path

import pytest

from jaxlab.config import ConfigError, load
from jaxlab.models import init_model, tiny_config
from jaxlab.runs import RunDirError
from jaxlab.train import pretrain
from jaxlab.train.metrics import read_jsonl
from tests.train import tiny_hf

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain_smollm2.yaml"


def test_shipped_config_loads_and_bad_keys_are_named():
    cfg = load(pretrain.Config, CONFIG)
    assert cfg.runner == "jaxlab.train.pretrain" and cfg.output_dir
    assert cfg.data.batch_size % cfg.optim.grad_accum_steps == 0
    with pytest.raises(ConfigError, match="'optim.lr'"):
        load(pretrain.Config, CONFIG, ["optim.lr=0.1"])
    with pytest.raises(ConfigError, match="model.param_dtype"):
        load(pretrain.Config, CONFIG, ["model.param_dtype=float64"])
    with pytest.raises(ConfigError, match="grad_accum_steps=3 must divide data.batch_size"):
        load(pretrain.Config, CONFIG, ["optim.grad_accum_steps=3"])


@pytest.fixture(scope="module")
def code_tokenizer():
    """A small byte-level BPE trained on a few stdlib files (the real one is tested in slow runs)."""
    return tiny_hf.code_tokenizer()


def test_run_writes_outputs_and_resumes(tmp_path, monkeypatch, code_tokenizer):
    def tiny_loader(section):
        cfg = tiny_config(
            "llama",
            num_layers=1,
            vocab_size=len(code_tokenizer),
            dtype=section.compute_dtype,
            param_dtype=section.param_dtype,
        )
        return init_model(cfg, seed=0), code_tokenizer

    monkeypatch.setattr(pretrain, "load_model", tiny_loader)
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        "data.seq_len=32",
        "data.batch_size=4",
        "data.eval_batches=2",
        "optim.learning_rate=0.01",
        "optim.warmup_steps=1",
        "optim.decay_steps=12",
        "train.steps=6",
        "train.eval_every=3",
        "train.progress=false",
        "checkpoint.every_steps=3",
    ]
    summary = pretrain.run(load(pretrain.Config, CONFIG, overrides))
    out = tmp_path / "run"
    for key in ("metrics", "loss_curve", "summary", "checkpoints", "tensorboard"):
        assert Path(summary["outputs"][key]).exists() and str(out) in summary["outputs"][key]
    assert (out / "config.yaml").exists()
    assert summary["steps"] == 6 and summary["resumed_from"] is None
    assert summary["perplexity_after"] < summary["perplexity_before"]
    assert json.loads((out / "summary.json").read_text()) == summary
    evals = [(r["step"], r["perplexity"]) for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "eval"]
    assert [s for s, _ in evals] == [0, 3, 6]
    assert evals[-1][1] == summary["perplexity_after"]

    # run longer with the same output_dir: continues from the step-6 checkpoint
    longer = pretrain.run(load(pretrain.Config, CONFIG, overrides + ["train.steps=8"]))
    assert longer["resumed_from"] == 6 and longer["steps"] == 8
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 9))

    # another config in the same output_dir: refused before any work, the first run's results untouched
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(
        RunDirError,
        match=r"different config .*changed keys: optim.learning_rate: 0.01 -> 0.02; "
        r"set overwrite=true",
    ):
        pretrain.run(load(pretrain.Config, CONFIG, overrides + ["optim.learning_rate=0.02"]))
    with pytest.raises(RunDirError, match=r"same config and checkpoint.resume is false"):
        pretrain.run(load(pretrain.Config, CONFIG, overrides + ["checkpoint.resume=false"]))
    assert (out / "metrics.jsonl").read_text() == before
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [6, 8]

    # overwrite=true: a fresh run whose checkpoints and metrics are all its own (no stale step 6 or 8)
    fresh = pretrain.run(
        load(
            pretrain.Config,
            CONFIG,
            overrides + ["optim.learning_rate=0.02", "train.steps=3", "train.eval_every=0", "overwrite=true"],
        )
    )
    assert fresh["resumed_from"] is None and fresh["steps"] == 3
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [3]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"] == [1, 2, 3]
    assert json.loads((out / "run.json").read_text())["config"]["optim"]["learning_rate"] == 0.02
