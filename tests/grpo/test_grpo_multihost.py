"""GRPO on 2 processes x 4 fake CPU devices (gloo) equals 1 process x 8 devices, step for step, and resumes in one.

Both processes run ``python -m jaxlab.cli run configs/grpo_tiny_math.yaml ... distributed.*``
with a mesh over all 8 devices: the same rollouts (tokens sampled over the whole
mesh, fetched whole by each host), rewards, losses and updates as the one-process
run in this test process; process 0 alone writes metrics, samples and results.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from tests.train.two_procs import ROOT, jaxlab_run, launch

CONFIG = ROOT / "configs" / "grpo_tiny_math.yaml"
KEYS = ("reward", "loss", "rewards/math_accuracy/mean", "completion_length/mean", "entropy", "grad_norm")
COMMON = ["progress=false", "checkpoint.every_steps=2"]


def _rows(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def _per_step(out: Path) -> dict[int, list[float]]:
    rows = [r for r in _rows(out, "metrics.jsonl") if r["split"] == "train"]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)), f"more than one process logged a step: {steps}"
    return {r["step"]: [r[k] for k in KEYS] for r in rows}


def _completions(out: Path) -> list[tuple[int, str]]:
    return [(r["step"], r["completion"]) for r in _rows(out, "samples.jsonl")]


@pytest.mark.slow
def test_grpo_two_processes_match_one_process_and_resume_in_one(tmp_path):
    mesh = ["mesh.data=2", "mesh.fsdp=4"]
    multi, single = tmp_path / "multi", tmp_path / "single"
    (_, log0), (_, log1) = launch(jaxlab_run(CONFIG, f"output_dir={multi}", *COMMON, *mesh, "steps=4"))
    assert '"before"' in log0 and '"before"' not in log1  # process 0 prints the results, alone
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *COMMON, *mesh, "steps=4"]) == 0

    got, want = _per_step(multi), _per_step(single)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    np.testing.assert_allclose(np.array([got[s] for s in want]), np.array([want[s] for s in want]), rtol=0, atol=1e-5)
    assert _completions(multi) == _completions(single)  # same rollouts, logged once
    assert len({tuple(v) for v in got.values()}) == 4  # it trained: every step's numbers differ
    results = json.loads((multi / "results.json").read_text())
    assert results["after"] == json.loads((single / "results.json").read_text())["after"]

    # the checkpoint both hosts wrote resumes in one process on another mesh shape
    assert (
        cli.main(
            [
                "run",
                str(CONFIG),
                f"output_dir={multi}",
                *COMMON,
                "mesh.data=1",
                "mesh.fsdp=4",
                "mesh.tensor=2",
                "steps=6",
            ]
        )
        == 0
    )
    assert cli.main(["run", str(CONFIG), f"output_dir={single}", *COMMON, *mesh, "steps=6"]) == 0
    got, want = _per_step(multi), _per_step(single)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    np.testing.assert_allclose(
        np.array([got[s] for s in (5, 6)]), np.array([want[s] for s in (5, 6)]), rtol=0, atol=1e-5
    )
