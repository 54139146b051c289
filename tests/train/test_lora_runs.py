"""The ``lora:`` section of the SFT and pretrain runners on a tiny Qwen2 folder: peft loads the adapter with the
logits of the merged hf_model/, only the targets change, and ``jaxlab export`` of a LoRA checkpoint merges it."""

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from jaxlab.cli import main as cli_main
from jaxlab.config import load
from jaxlab.train import pretrain, sft
from tests.train import tiny_hf

peft = pytest.importorskip("peft")
ROOT = Path(__file__).resolve().parents[2] / "configs"
LORA = ["lora.rank=4", "lora.alpha=8", "lora.dropout=0.1", "lora.target_modules=[q_proj,v_proj,up_proj]"]


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory):
    return tiny_hf.tiny_qwen2_folder(tmp_path_factory.mktemp("qwen2") / "hf", tiny_hf.code_tokenizer())


def _overrides(out: Path, folder: Path, steps: int, *extra: str) -> list[str]:
    return [
        f"output_dir={out}",
        f"model.path={folder}",
        "optim.learning_rate=0.02",
        "optim.warmup_steps=0",
        f"optim.decay_steps={steps}",
        f"train.steps={steps}",
        "train.progress=false",
        "checkpoint.async_save=false",
        "data.eval_batches=1",
        *extra,
    ]


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def _changed(base: Path, trained: Path) -> set[str]:
    a, b = load_file(base / "model.safetensors"), load_file(trained / "model.safetensors")
    return {k.removesuffix(".weight") for k in a if not np.array_equal(a[k], b[k])}


@pytest.mark.slow
def test_sft_with_lora_writes_a_peft_adapter_equal_to_the_merged_model(qwen2_folder, tmp_path):
    out = tmp_path / "run"
    overrides = _overrides(
        out,
        qwen2_folder,
        6,
        "data.max_examples=32",
        "data.seq_len=48",
        "data.batch_size=4",
        "data.samples=0",
        "checkpoint.every_steps=3",
        *LORA,
    )
    summary = sft.run(load(sft.Config, ROOT / "sft_smollm2.yaml", overrides))
    assert summary["loss_after"] < summary["loss_before"]
    adapter = Path(summary["outputs"]["lora_adapter"])
    assert _changed(qwen2_folder, out / "hf_model") == {
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj")
    }

    base = transformers.AutoModelForCausalLM.from_pretrained(qwen2_folder, dtype=torch.float32).eval()
    merged = transformers.AutoModelForCausalLM.from_pretrained(out / "hf_model", dtype=torch.float32).eval()
    ids = np.random.default_rng(0).integers(0, 384, size=(2, 12))
    base_logits = _logits(base, ids)
    with_adapter = _logits(peft.PeftModel.from_pretrained(base, str(adapter)).eval(), ids)
    np.testing.assert_allclose(with_adapter, _logits(merged, ids), atol=1e-4, rtol=0)
    assert np.abs(with_adapter - base_logits).max() > 1e-3

    # the checkpoints hold the adapters only; export merges them into the run's base
    assert cli_main(["export", str(out / "checkpoints"), str(tmp_path / "exported")]) == 0
    final, exported = (
        load_file(out / "hf_model" / "model.safetensors"),
        load_file(tmp_path / "exported" / "model.safetensors"),
    )
    assert all(np.allclose(final[k], exported[k], atol=1e-6) for k in final)
    ckpt_bytes = sum(f.stat().st_size for f in (out / "checkpoints").rglob("*") if f.is_file())
    assert ckpt_bytes < (qwen2_folder / "model.safetensors").stat().st_size


@pytest.mark.slow
def test_pretrain_with_lora_changes_only_the_targets(qwen2_folder, tmp_path):
    out = tmp_path / "run"
    overrides = _overrides(
        out,
        qwen2_folder,
        4,
        "data.seq_len=32",
        "data.batch_size=2",
        "checkpoint.every_steps=4",
        "lora.target_modules=[layers.1.*]",
    )
    summary = pretrain.run(load(pretrain.Config, ROOT / "pretrain_smollm2.yaml", overrides))
    assert summary["perplexity_after"] < summary["perplexity_before"]
    assert (Path(summary["outputs"]["lora_adapter"]) / "adapter_config.json").is_file()
    assert {k.rsplit(".", 1)[0] for k in _changed(qwen2_folder, out / "hf_model")} == {
        "model.layers.1.self_attn",
        "model.layers.1.mlp",
    }
