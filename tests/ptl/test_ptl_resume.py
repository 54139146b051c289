"""A PTL run SIGKILLed inside a stage's tuning resumes inside that stage, with the same losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.kill_helpers import kill_when_paused

SCRIPT = Path(__file__).with_name("ptl_kill_run.py")
STAGE, PAUSE, EVERY, STEPS = 2, 5, 2, 6


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "DONE" in out, out[-3000:]


def _rows(out: Path) -> dict:
    return {r["stage"]: r for r in json.loads((out / "results.json").read_text())["rows"]}


def test_sigkill_mid_stage_resumes_inside_the_stage(tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = _start(straight_dir)
    killed = _start(killed_dir, "--pause-stage", str(STAGE), "--pause-step", str(PAUSE))
    kill_when_paused(killed, f"PAUSED {STAGE} {PAUSE}")
    tune_dir = killed_dir / "ptl" / "tune"
    assert sorted(p.name for p in tune_dir.iterdir()) == [f"stage_{STAGE}"]  # stage 1's were dropped when it ended
    assert sorted(int(p.name) for p in (tune_dir / f"stage_{STAGE}").iterdir() if p.name.isdigit()) == [4]
    assert [int(p.name) for p in (killed_dir / "ptl" / "checkpoints").iterdir() if p.name.isdigit()] == [1]

    _finish(_start(killed_dir))  # resumes after stage 1, then inside stage 2 from its step 4
    _finish(straight)
    want, got = _rows(straight_dir), _rows(killed_dir)
    assert want[STAGE]["tune_resumed_from"] is None and got[STAGE]["tune_resumed_from"] == 4
    assert [s for s, _ in want[STAGE]["tune_losses"]] == list(range(1, STEPS + 1))
    assert [s for s, _ in got[STAGE]["tune_losses"]] == [5, 6]  # steps 1-4 were not redone
    tail = {s: v for s, v in want[STAGE]["tune_losses"]}
    for s, v in got[STAGE]["tune_losses"]:
        assert abs(v - tail[s]) <= 1e-6, (s, v, tail[s])
    assert got[1]["tune_losses"] == want[1]["tune_losses"]  # restored from the stage-1 checkpoint's rows
    assert got[STAGE]["code_ppl"] == want[STAGE]["code_ppl"] and got[STAGE]["text_ppl"] == want[STAGE]["text_ppl"]
    assert not (tune_dir / f"stage_{STAGE}").exists()  # dropped once the stage checkpoint was written
