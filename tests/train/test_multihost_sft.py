"""The SFT runner on 2 processes x 4 fake CPU devices (gloo) trains like 1 process x 8, and resumes elsewhere.

Both processes run ``python -m jaxlab.cli run configs/sft_smollm2.yaml ... distributed.*``
on a tiny random Qwen2 folder; the one-process reference and the resume run in
this (8-device) test process. ``data.shards=2`` makes both runs read the same
global batches: in the two-process run each host reads only its shard.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxlab import cli
from jaxlab.train import data, sft_data
from jaxlab.train.metrics import read_jsonl
from tests.train import tiny_hf
from tests.train.two_procs import ROOT, jaxlab_run, launch

CONFIG = ROOT / "configs" / "sft_smollm2.yaml"


def _chats(path: Path) -> Path:
    """100 stdlib-docstring conversations as a JSONL source (generating the built-in set takes longer).

    The questions lose their signatures, so every row keeps assistant tokens within ``seq_len`` of the tiny
    tokenizer (with signatures, a third of the rows at 64 tokens hold none).
    """
    convs = itertools.islice(sft_data.docstring_conversations(data.stdlib_python_files(), data.stdlib_root()), 100)
    short = [[{"role": "user", "content": q["content"].split("(")[0] + "`?"}, a] for q, a in convs]
    return sft_data.write_jsonl(short, path)


def _common(folder: Path, chats: Path) -> list[str]:
    return [
        f"model.path={folder}",
        f"data.source={chats}",
        "data.heldout_fraction=0.1",
        "data.max_examples=64",
        "data.seq_len=96",
        "data.batch_size=8",
        "data.eval_batches=1",
        "data.samples=1",
        "data.shards=2",
        "optim.learning_rate=0.01",
        "optim.warmup_steps=1",
        "optim.decay_steps=8",
        "train.progress=false",
        "checkpoint.every_steps=2",
    ]


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
    common = _common(folder, _chats(tmp_path / "chats.jsonl"))
    mesh = ["mesh.data=2", "mesh.fsdp=4"]
    multi, single = tmp_path / "multi", tmp_path / "single"
    (_, log0), (_, log1) = launch(jaxlab_run(CONFIG, f"output_dir={multi}", *common, *mesh, "train.steps=4"))
    assert "[sft] hf_model:" in log0 and "[sft]" not in log1, log1[-2000:]  # process 0 reports, alone
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *common, *mesh, "train.steps=4"]) == 0

    got, want = _losses(multi), _losses(single)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=0, atol=1e-5)
    assert len(set(got.values())) == 4  # it trained: every step's loss differs
    evals = [r for r in read_jsonl(multi / "metrics.jsonl") if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4]  # one writer: one before/after record each
    # the weights spread over the two hosts were gathered for hf_model/: equal to the one-process run's, up to
    # Adam's sign-like update of near-zero gradients (measured: 1.15e-5 at most) and far below what training moved
    w_multi, w_single, w_init = _weights(multi), _weights(single), load_file(folder / "model.safetensors")
    assert sorted(w_multi) == sorted(w_single)
    for k in w_single:
        np.testing.assert_allclose(w_multi[k], w_single[k], rtol=0, atol=1e-4, err_msg=k)
    assert max(np.abs(w_single[k] - w_init[k]).max() for k in w_init) > 1e-2

    # the checkpoint the two hosts wrote resumes in one process on fsdp=4 x tensor=2, data state included
    assert (
        cli.main(
            [
                "run",
                str(CONFIG),
                f"output_dir={multi}",
                *common,
                "mesh.data=1",
                "mesh.fsdp=4",
                "mesh.tensor=2",
                "train.steps=6",
            ]
        )
        == 0
    )
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *common, *mesh, "train.steps=6"]) == 0
    got, want = _losses(multi), _losses(single)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    np.testing.assert_allclose([got[s] for s in (5, 6)], [want[s] for s in (5, 6)], rtol=0, atol=1e-5)
