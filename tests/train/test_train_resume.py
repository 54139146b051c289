"""A run SIGKILLed after a checkpoint and resumed matches an uninterrupted run exactly."""

import os
import subprocess
import sys
from pathlib import Path

from jaxlab.train.metrics import read_jsonl
from tests.kill_helpers import kill_when_paused

SCRIPT = Path(__file__).with_name("tiny_run.py")
STEPS, EVERY, PAUSE = 12, 4, 10


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), "--steps", str(STEPS), "--every", str(EVERY), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _losses(out: Path) -> dict[int, float]:
    records = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicate steps in metrics: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0 and "DONE" in out, out[-3000:]
    return out


def test_killed_run_resumes_to_the_same_loss(tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = _start(straight_dir)
    killed = _start(killed_dir, "--pause-at", str(PAUSE))
    kill_when_paused(killed, f"PAUSED {PAUSE}")  # waits until it has trained past the step-8 checkpoint
    ckpts = sorted(int(p.name) for p in (killed_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts == [4, 8]
    assert max(_losses(killed_dir)) == PAUSE  # steps 9-10 ran but were never checkpointed

    _finish(_start(killed_dir))  # resume from step 8
    _finish(straight)
    want, got = _losses(straight_dir), _losses(killed_dir)
    assert sorted(want) == sorted(got) == list(range(1, STEPS + 1))
    for step in want:
        assert abs(got[step] - want[step]) <= 1e-6, (step, got[step], want[step])
    assert got[STEPS] == want[STEPS]
