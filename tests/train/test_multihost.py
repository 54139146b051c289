"""Two processes x 4 fake CPU devices (gloo collectives over localhost) train like one process x 8 devices.

The two-process run goes through ``python -m jaxlab.cli run ... distributed.*``
exactly as the README shows; the one-process reference and the resume run in
this (8-device) test process. Each process reads only its data shard, so the
test also checks that the global batches are assembled in the same order.
"""

from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.train.metrics import read_jsonl
from tests.train.two_procs import jaxlab_run, launch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pretrain_tiny.yaml"
COMMON = ["train.progress=false", "data.eval_batches=1", "checkpoint.every_steps=4", "data.shards=2", "data.seq_len=32"]


def _losses(out: Path) -> dict[int, float]:
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"two processes logged the same step: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _two_processes(out: Path, *overrides: str) -> list[str]:
    return [log for _, log in launch(jaxlab_run(CONFIG, f"output_dir={out}", *COMMON, *overrides))]


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_elsewhere(tmp_path):
    mesh = ["mesh.data=2", "mesh.fsdp=4"]
    logs = _two_processes(tmp_path / "multi", *mesh, "train.steps=4")
    assert "[pretrain] outputs in" in logs[0] and "[pretrain]" not in logs[1]  # process 0 reports, alone
    assert (tmp_path / "multi" / "hf_model" / "config.json").is_file()  # gathered from both hosts' shards
    assert cli.main(["run", str(CONFIG), f"output_dir={tmp_path / 'single'}", *COMMON, *mesh, "train.steps=4"]) == 0
    multi, single = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
    assert sorted(multi) == sorted(single) == [1, 2, 3, 4]
    np.testing.assert_allclose([multi[s] for s in multi], [single[s] for s in multi], rtol=0, atol=1e-5)
    assert len(set(multi.values())) == 4  # it trained: every step's loss differs

    # the checkpoint the two hosts wrote resumes in one process on another mesh shape, data state included
    assert (
        cli.main(
            [
                "run",
                str(CONFIG),
                f"output_dir={tmp_path / 'multi'}",
                *COMMON,
                "mesh.data=1",
                "mesh.fsdp=4",
                "mesh.tensor=2",
                "train.steps=6",
            ]
        )
        == 0
    )
    assert cli.main(["run", str(CONFIG), f"output_dir={tmp_path / 'single'}", *COMMON, *mesh, "train.steps=6"]) == 0
    multi, single = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
    assert sorted(multi) == sorted(single) == list(range(1, 7))
    np.testing.assert_allclose([multi[s] for s in (5, 6)], [single[s] for s in (5, 6)], rtol=0, atol=1e-5)
