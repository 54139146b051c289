"""Run metrics: one JSONL file, TensorBoard event files, and a loss-curve PNG.

Each record is ``{"step": int, "split": "train"|"eval"|..., <name>: float}``.
When a run resumes from step ``k`` the JSONL keeps only records with
``step <= k``: steps that ran after the last checkpoint of a killed run are
recomputed, and the file must not hold two different values for one step.
A fresh run (no checkpoint) moves an existing file to ``metrics.prev.jsonl``
rather than deleting finished results.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class MetricsWriter:
    """Append metrics to ``<dir>/metrics.jsonl`` and ``<dir>/tensorboard/``."""

    def __init__(self, directory: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.directory / "metrics.jsonl"
        self.tensorboard_dir = self.directory / "tensorboard"
        self._truncate_after(resume_step)
        self._file = self.jsonl_path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint.
            self._tb = SummaryWriter(
                logdir=str(self.tensorboard_dir), purge_step=resume_step + 1 if resume_step else None
            )

    def _truncate_after(self, resume_step: int | None) -> None:
        if not self.jsonl_path.exists():
            return
        if resume_step is None:  # a fresh run: keep the old records aside instead of deleting them
            self.jsonl_path.replace(self.jsonl_path.with_name("metrics.prev.jsonl"))
            return
        kept = [r for r in read_jsonl(self.jsonl_path) if r.get("step", 0) <= resume_step]
        self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        record = {"step": int(step), "split": split}
        record.update({k: _plain(v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{split}/{k}", v, global_step=int(step))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(v: Any) -> Any:
    if isinstance(v, (np.generic, np.ndarray)) or hasattr(v, "__array__"):
        v = np.asarray(v).item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (killed writer) is dropped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss_curve(jsonl_path: str | Path, png_path: str | Path, title: str = "loss") -> Path:
    """Train loss per step (and eval loss where logged) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(jsonl_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for split, style in (("train", "-"), ("eval", "o--")):
        pts = sorted(
            (r["step"], r["loss"])
            for r in records
            if r.get("split") == split and isinstance(r.get("loss"), (int, float))
        )
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, style, label=f"{split} loss", markersize=4, alpha=0.45 if split == "train" else 1.0)
            if split == "train" and len(ys) >= 8:  # small batches are noisy: show the trend too
                k = max(len(ys) // 8, 3)
                smooth = np.convolve(ys, np.ones(k) / k, mode="valid")
                ax.plot(xs[k - 1 :], smooth, "-", color="C0", linewidth=2, label=f"train loss ({k}-step mean)")
    if not ax.lines:
        raise ValueError(f"{jsonl_path}: no 'loss' records to plot")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
