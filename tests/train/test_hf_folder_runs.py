"""A local HF folder in, an HF folder out: pretrain a tiny Qwen2 made by transformers, then ``jaxlab export``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from jaxlab.cli import main as cli_main
from jaxlab.config import load
from jaxlab.models import from_hf
from jaxlab.models.pretrained import load_pretrained, pretrained_config
from jaxlab.train import pretrain
from tests.train import tiny_hf

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain_smollm2.yaml"


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory):
    tok = tiny_hf.code_tokenizer()
    return tiny_hf.tiny_qwen2_folder(tmp_path_factory.mktemp("qwen2") / "hf", tok)


def _logits(folder, ids):
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(torch.tensor(ids)).logits.numpy()


def test_load_pretrained_reads_any_hf_folder_and_names_bad_paths(qwen2_folder, tmp_path):
    model, tok = load_pretrained(str(qwen2_folder))
    assert model.config.family == "qwen2" and pretrained_config(qwen2_folder) == model.config
    ids = np.asarray([tok.encode("def f(x):\n    return x", add_special_tokens=False)])
    np.testing.assert_allclose(np.asarray(model(ids)), _logits(qwen2_folder, ids), atol=1e-4, rtol=0)
    with pytest.raises(FileNotFoundError, match="smollm2-135m-instruct.*no config.json"):
        load_pretrained(str(tmp_path / "missing"))


def test_pretrain_on_a_folder_writes_hf_model_and_export_matches(qwen2_folder, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}",
        f"model.path={qwen2_folder}",
        "data.seq_len=32",
        "data.batch_size=2",
        "data.eval_batches=1",
        "optim.learning_rate=0.01",
        "optim.warmup_steps=1",
        "optim.decay_steps=4",
        "train.steps=4",
        "train.progress=false",
        "checkpoint.every_steps=2",
        "checkpoint.async_save=false",
    ]
    summary = pretrain.run(load(pretrain.Config, CONFIG, overrides))
    assert summary["model"] == str(qwen2_folder) and summary["outputs"]["hf_model"] == str(out / "hf_model")
    assert summary["peak_rss_bytes"] > 100e6 and "peak RSS" in capsys.readouterr().out
    trained = out / "hf_model"
    assert json.loads((trained / "config.json").read_text())["model_type"] == "qwen2"
    tok = transformers.AutoTokenizer.from_pretrained(trained)
    ids = np.asarray([tok.encode("import os\nprint(os.sep)", add_special_tokens=False)])
    np.testing.assert_allclose(_logits(trained, ids), np.asarray(from_hf(trained)(ids)), atol=1e-4, rtol=0)
    assert np.abs(_logits(trained, ids) - _logits(qwen2_folder, ids)).max() > 1e-3  # training changed it

    # the latest checkpoint exports to the same weights as the run's own hf_model/; step 2 differs
    assert cli_main(["export", str(out / "checkpoints"), str(tmp_path / "latest")]) == 0
    assert cli_main(["export", str(out / "checkpoints" / "2"), str(tmp_path / "step2")]) == 0
    final, latest = load_file(trained / "model.safetensors"), load_file(tmp_path / "latest" / "model.safetensors")
    assert final.keys() == latest.keys() and all(np.array_equal(final[k], latest[k]) for k in final)
    step2 = load_file(tmp_path / "step2" / "model.safetensors")
    assert any(not np.array_equal(final[k], step2[k]) for k in final)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "step2").encode("x = 1") == tok.encode("x = 1")
    assert "[export] step 2" in capsys.readouterr().out


def test_export_names_what_is_missing(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "nothing" / "checkpoints"), str(tmp_path / "out")]) == 2
    assert "model_config.json" in capsys.readouterr().err
