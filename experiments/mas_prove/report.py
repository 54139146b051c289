"""The paper-style MAS-ProVe table: accuracy (mean ± std over seeds) per framework x setting x benchmark."""

from __future__ import annotations

import json
from pathlib import Path


def format_table(rows: list[dict], benchmarks: list[str]) -> str:
    head = (
        f"{'framework':<10}{'family':<10}{'setting':<28}"
        + "".join(f"{b:>18}" for b in benchmarks)
        + f"{'MAS tok/task':>13}{'verif tok/task':>15}{'fallbacks':>11}"
    )
    lines = ["MAS-ProVe: accuracy % (mean ± std over seeds)", head, "-" * len(head)]
    for r in rows:
        cells = "".join(
            f"{r['acc'][b]['mean'] * 100:>11.1f} ± {r['acc'][b]['std'] * 100:>4.1f}" if b in r["acc"] else f"{'-':>18}"
            for b in benchmarks
        )
        lines.append(
            f"{r['framework']:<10}{r['family']:<10}{r['setting']:<28}{cells}{r['tokens_per_task']:>13.0f}"
            f"{r.get('verifier_tokens_per_task', 0):>15.0f}"
            f"{r['fallbacks']:>11d}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], benchmarks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 4), squeeze=False)
    for ax, b in zip(axes[0], benchmarks):
        sel = [r for r in rows if b in r["acc"]]
        labels = [f"{r['framework']}\n{r['setting']}" for r in sel]
        ax.bar(
            range(len(sel)),
            [100 * r["acc"][b]["mean"] for r in sel],
            yerr=[100 * r["acc"][b]["std"] for r in sel],
            capsize=3,
        )
        ax.set_xticks(range(len(sel)), labels, rotation=90, fontsize=6)
        ax.set_title(b)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out_dir: Path, summary: dict) -> str:
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    plot(summary["rows"], summary["benchmarks"], out_dir / "accuracy.png")
    return format_table(summary["rows"], summary["benchmarks"])
