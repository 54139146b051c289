"""A tiny PTL run driven as a subprocess by test_ptl_resume.py (SIGKILL mid-stage, then resume).

    python tests/ptl/ptl_kill_run.py OUT_DIR [--pause-stage K --pause-step J] [key=value ...]

Runs the PTL runner on a random tiny Llama with mid-stage tune checkpoints. With ``--pause-stage K
--pause-step J`` it stops inside stage K's tuning after step J (past a checkpoint, with steps that
were never checkpointed), prints ``PAUSED K J`` and sleeps, so the test can SIGKILL it at a known
point. Prints ``DONE`` at the end.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.ptl import runner, tune  # noqa: E402
from jaxlab.config import load  # noqa: E402
from jaxlab.train.trainer import fit  # noqa: E402

CFG = {
    "model": {"name": "tiny-llama"},
    "data": {
        "seq_len": 32,
        "batch_size": 2,
        "calib_batches": 1,
        "english_batches": 1,
        "eval_tokens": 128,
        "eval_batch_size": 4,
        "task_items": 0,
    },
    "schedule": {"stages": 2, "target": 0.5},
    "tune": {"steps": 6, "checkpoint_every": 2, "learning_rate": 0.002},
    "baselines": [],
    "progress": False,
    "speed": {"enabled": False},
    "export_hf": False,
    "compile_cache": False,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pause-stage", type=int, default=None)
    ap.add_argument("--pause-step", type=int, default=None)
    args, overrides = ap.parse_known_args()
    stage = {"n": 0}

    def pausing_fit(model, data, optim, train_cfg, **kwargs):
        stage["n"] += 1  # one fit per stage (PTL track only: no baselines)

        def on_step(step: int, record: dict) -> None:
            if (stage["n"], step) == (args.pause_stage, args.pause_step):
                print(f"PAUSED {stage['n']} {step}", flush=True)
                time.sleep(600)

        return fit(model, data, optim, train_cfg, on_step=on_step, **kwargs)

    tune.fit = pausing_fit
    runner.run(load(runner.Config, None, overrides, data={**CFG, "output_dir": args.out}))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
