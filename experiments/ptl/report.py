"""Results table (printed and JSON) and the quality-vs-parameters plot, PTL against the baselines."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

COLUMNS = [("track", "{}"), ("stage", "{}"), ("params", "{:.2f}M"), ("code_ppl", "{:.3f}"), ("text_ppl", "{:.3f}"),
           ("accuracy", "{:.3f}"), ("tokens", "{}")]


def format_table(rows: Sequence[dict]) -> str:
    """A fixed-width table: track, stage, params, code/text perplexity, task accuracy, tuning tokens used."""
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None:
            return "-"
        return fmt.format(value / 1e6 if key == "params" else value)

    body = [[cell(r, k, f) for k, f in COLUMNS] for r in rows]
    heads = [k for k, _ in COLUMNS]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, body)])


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=float))


def plot_quality(rows: Sequence[dict], path: Path, title: str) -> Path:
    """Two panels (code and text perplexity, log scale) against parameter count, one curve per track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    base = [r for r in rows if r["track"] == "base"]
    styles = {"ptl": ("C0", "o-", "PTL (prune-tune stages)"), "one_shot": ("C3", "s--", "one-shot + tune"),
              "no_tune": ("C7", "x:", "one-shot, no tune")}
    for ax, key, name in ((axes[0], "code_ppl", "held-out code perplexity"),
                          (axes[1], "text_ppl", "held-out English perplexity")):
        for track, (color, style, label) in styles.items():
            pts = base + [r for r in rows if r["track"] == track]
            if len(pts) > len(base):
                ax.plot([p["params"] / 1e6 for p in pts], [p[key] for p in pts], style, color=color, label=label)
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel(name)
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
