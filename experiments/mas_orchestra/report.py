"""Write the MAS-Orchestra table: JSON, a printed axis x level table, and an accuracy-vs-level PNG."""

from __future__ import annotations

import json
from pathlib import Path


def format_table(table: dict[str, dict[str, float]], levels: list[int], title: str) -> str:
    head = f"{'axis':<12}" + "".join(f"{'L' + str(lv):>8}" for lv in levels) + f"{'all':>8}"
    lines = [title, head, "-" * len(head)]
    for axis, row in table.items():
        cells = "".join(f"{100 * row[str(lv)]:>8.1f}" if str(lv) in row else f"{'-':>8}" for lv in levels)
        lines.append(f"{axis:<12}{cells}{100 * row['all']:>8.1f}")
    return "\n".join(lines)


def plot(table: dict[str, dict[str, float]], levels: list[int], path: Path, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for axis, row in table.items():
        xs = [lv for lv in levels if str(lv) in row]
        ax.plot(xs, [100 * row[str(lv)] for lv in xs], marker="o", label=axis)
    ax.set_xlabel("level")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out_dir: Path, summary: dict, levels: list[int]) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    plot(summary["accuracy"], levels, out_dir / "accuracy_by_level.png", "accuracy (%)")
    return format_table(summary["accuracy"], levels, f"MAS-Orchestra on MASBench: accuracy (%) [{summary['model']}]")
