"""`jaxlab run configs/grpo_tiny_math.yaml`: outputs, and a SIGKILLed run resumes to the same per-step numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("reward", "loss", "rewards/math_accuracy/mean", "completion_length/mean", "entropy")


def _run(out: Path, *extra: str, wait: bool = True):
    cmd = [
        sys.executable,
        "-m",
        "jaxlab.cli",
        "run",
        str(ROOT / "configs/grpo_tiny_math.yaml"),
        f"output_dir={out}",
        "progress=false",
        "steps=6",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if wait:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _samples(out: Path) -> dict[int, list[tuple]]:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    by_step: dict[int, list[tuple]] = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append((r["completion"], r["reward"], r["math_accuracy"]))
    return by_step


def _per_step(out: Path) -> dict[int, tuple]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: tuple(r.get(k) for k in KEYS) for r in rows if r["split"] == "train"}


@pytest.mark.slow
def test_kill_and_resume_reproduces_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    done = _run(full)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((full / "results.json").read_text())
    assert set(results["before"]) == set(results["after"]) >= {"heldout_generated"}
    assert (full / "reward_curve.png").stat().st_size > 0 and (full / "tensorboard").is_dir()

    killed = tmp_path / "killed"
    proc = _run(killed, wait=False)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "2").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # as if the killed run had logged a step past its last checkpoint: the resumed run must replace it
    with (killed / "samples.jsonl").open("a") as f:
        f.write(json.dumps({"step": 6, "completion": "stale", "reward": -1.0, "math_accuracy": -1.0}) + "\n")
    resumed = _run(killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((killed / "results.json").read_text())["resumed_from"] is not None
    want, got = _per_step(full), _per_step(killed)
    assert sorted(got) == list(range(1, 7))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step
    # the completions log holds each step's G x prompts rows exactly once, the same as uninterrupted
    want_samples, got_samples = _samples(full), _samples(killed)
    assert sorted(got_samples) == list(range(1, 7))
    assert all(len(rows) == len(want_samples[1]) > 0 for rows in got_samples.values())
    assert got_samples == want_samples


def test_runner_trains_on_a_mesh(tmp_path):
    from jaxlab.cli import load_run_config

    runner, cfg = load_run_config(
        str(ROOT / "configs/grpo_tiny_math.yaml"),
        [
            f"output_dir={tmp_path}",
            "progress=false",
            "steps=2",
            "mesh.data=-1",
            "mesh.fsdp=2",
            "checkpoint.every_steps=0",
            "data.heldout_tasks=4",
        ],
    )
    assert cfg.mesh.fsdp == 2
    result = runner.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2] and result["steps"] == 2
