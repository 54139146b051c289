"""A tiny checkpointed training run, driven as a subprocess by test_train_resume.py.

    python tests/train/tiny_run.py OUT_DIR --steps 12 --every 4 [--pause-at 10]

Trains a tiny random Llama on packed stdlib bytes with async checkpoints under
``OUT_DIR/checkpoints`` and metrics in ``OUT_DIR/metrics.jsonl``, resuming from
the latest checkpoint if there is one. With ``--pause-at K`` it waits for
pending checkpoints after step K, prints ``PAUSED K`` and sleeps, so that the
test can SIGKILL it at a known point with work done past the last checkpoint.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jaxlab.models import init_model, tiny_config  # noqa: E402
from jaxlab.train import data  # noqa: E402
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer  # noqa: E402
from jaxlab.train.metrics import MetricsWriter  # noqa: E402
from jaxlab.train.optim import OptimConfig  # noqa: E402
from jaxlab.train.trainer import TrainConfig, fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--every", type=int, required=True)
    ap.add_argument("--pause-at", type=int, default=None)
    args = ap.parse_args()

    files, _ = data.split_files(data.stdlib_python_files(), 0.1)
    dataset = data.pretrain_dataset(files[:60], lambda t: list(t.encode()), eos_id=0, seq_len=32, batch_size=4, seed=0)
    ckpt = Checkpointer(args.out / "checkpoints", CheckpointConfig(every_steps=args.every, keep=2))
    metrics = MetricsWriter(args.out, resume_step=ckpt.latest_step(), tensorboard=False)

    def on_step(step: int, record: dict) -> None:
        if step == args.pause_at:
            ckpt.wait()
            print(f"PAUSED {step}", flush=True)
            time.sleep(600)

    optim = OptimConfig(learning_rate=3e-3, warmup_steps=2, decay_steps=args.steps, grad_accum_steps=2)
    fit(
        init_model(tiny_config("llama", num_layers=1), seed=0),
        dataset,
        optim,
        TrainConfig(steps=args.steps, progress=False),
        checkpointer=ckpt,
        metrics=metrics,
        on_step=on_step,
    )
    metrics.close()
    ckpt.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
