"""The RL-Text2Vis curves: per GRPO step, the fraction of rollouts that pass the format reward, whose code
executes, whose answer matches, and the mean main reward (``python -m experiments.text2vis.rl_plot RUN_DIR``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jaxlab.train.metrics import read_jsonl

SERIES = (
    ("rewards/rl_text2vis/format", "format reward (strict JSON)"),
    ("rewards/rl_text2vis/status_ok", "code executes (chart saved)"),
    ("rewards/rl_text2vis/code_format_json_string", "code found (JSON string)"),
    ("rewards/rl_text2vis/binary", "answer matches"),
    ("rewards/rl_text2vis/main", "main reward (0-1)"),
)


def plot_parts_curve(run_dir: str | Path, png_name: str = "parts_curve.png") -> Path:
    """Plot the per-step rollout fractions from ``run_dir/metrics.jsonl`` into ``run_dir/png_name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("split") == "train"]
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no train records to plot")
    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for key, label in SERIES:
        # a status or format absent from a step's counts means none of its rollouts had it
        ys = np.array(
            [r.get(key, 0.0 if "status_" in key or "code_format_" in key else np.nan) for r in records], dtype=float
        )
        ax.plot(steps, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("fraction / mean over the step's rollouts")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("RL-Text2Vis training rollouts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / png_name
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot_parts_curve(sys.argv[1]))
