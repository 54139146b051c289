"""The SFT runner on 2 processes x 4 fake CPU devices (gloo) trains like 1 process x 8, and resumes elsewhere.

Both processes run ``python -m jaxlab.cli run configs/sft_smollm2.yaml ... distributed.*``
on a tiny random Qwen2 folder; the one-process reference and the resume run in
this (8-device) test process. ``data.shards=2`` makes both runs read the same
global batches: in the two-process run each host reads only its shard.
"""
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxlab import cli
from jaxlab.train.metrics import read_jsonl
from tests.train import tiny_hf
from tests.train.two_procs import ROOT, jaxlab_run, launch

CONFIG = ROOT / "configs" / "sft_smollm2.yaml"


def _common(folder: Path) -> list[str]:
    return [f"model.path={folder}", "data.max_examples=64", "data.seq_len=48", "data.batch_size=8",
            "data.eval_batches=1", "data.samples=1", "data.shards=2", "optim.learning_rate=0.01",
            "optim.warmup_steps=1", "optim.decay_steps=8", "train.progress=false", "checkpoint.every_steps=2"]


def _losses(out: Path) -> dict[int, float]:
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"more than one process logged a step: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _weights(out: Path) -> dict[str, np.ndarray]:
    return load_file(out / "hf_model" / "model.safetensors")


@pytest.mark.slow
def test_sft_two_processes_match_one_process_and_resume_on_another_mesh(tmp_path):
    folder = tiny_hf.tiny_qwen2_folder(tmp_path / "hf", tiny_hf.code_tokenizer())
    mesh = ["mesh.data=2", "mesh.fsdp=4"]
    multi, single = tmp_path / "multi", tmp_path / "single"
    (_, log0), (_, log1) = launch(jaxlab_run(CONFIG, f"output_dir={multi}", *_common(folder), *mesh,
                                             "train.steps=4"))
    assert "[sft] hf_model:" in log0 and "[sft]" not in log1, log1[-2000:]  # process 0 reports, alone
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *_common(folder), *mesh, "train.steps=4"]) == 0

    got, want = _losses(multi), _losses(single)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=0, atol=1e-5)
    assert len(set(got.values())) == 4  # it trained: every step's loss differs
    evals = [r for r in read_jsonl(multi / "metrics.jsonl") if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4]  # one writer: one before/after record each
    # the weights spread over the two hosts were gathered for hf_model/: equal to the one-process run's
    w_multi, w_single = _weights(multi), _weights(single)
    assert sorted(w_multi) == sorted(w_single)
    for k in w_single:
        np.testing.assert_allclose(w_multi[k], w_single[k], rtol=0, atol=1e-5, err_msg=k)
    assert any(not np.allclose(w_single[k], w) for k, w in load_file(folder / "model.safetensors").items())

    # the checkpoint the two hosts wrote resumes in one process on fsdp=4 x tensor=2, data state included
    assert cli.main(["run", str(CONFIG), f"output_dir={multi}", *_common(folder), "mesh.data=1", "mesh.fsdp=4",
                     "mesh.tensor=2", "train.steps=6"]) == 0
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *_common(folder), *mesh, "train.steps=6"]) == 0
    got, want = _losses(multi), _losses(single)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    np.testing.assert_allclose([got[s] for s in (5, 6)], [want[s] for s in (5, 6)], rtol=0, atol=1e-5)
