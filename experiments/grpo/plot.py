"""The reward curve that matters for a GRPO run: total and per-function mean reward per step."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from jaxlab.train.metrics import read_jsonl


def plot_reward_curve(jsonl_path: str | Path, png_path: str | Path, reward_names: Sequence[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_jsonl(jsonl_path) if r.get("split") == "train"]
    if not records:
        raise ValueError(f"{jsonl_path}: no train records to plot")
    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    series = [("reward", "total (weighted)")] + [(f"rewards/{n}/mean", n) for n in reward_names]
    for key, label in series:
        ys = np.array([r.get(key, np.nan) for r in records], dtype=float)
        ax.plot(steps, ys, alpha=0.4, label=label)
        if len(ys) >= 8:
            k = max(len(ys) // 8, 3)
            ax.plot(
                steps[k - 1 :],
                np.convolve(ys, np.ones(k) / k, mode="valid"),
                color=ax.lines[-1].get_color(),
                linewidth=2,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward over the rollout batch")
    ax.set_title("GRPO training reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
