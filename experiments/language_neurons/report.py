"""Tables (markdown) and pictures (PNG) of a language-neurons run.

* :func:`plot_counts` - heat map, per detector, of shared / exclusive(L) neuron counts per layer.
* :func:`plot_deactivation` - bar chart of each language's perplexity ratio to the intact model under
  every deactivation condition (shared, random of the shared size, own exclusive, random of that size).
* :func:`counts_table`, :func:`deactivation_table`, :func:`training_table`, :func:`development_table` -
  the markdown tables ``results.md`` is made of. Every number in them is measured by the run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON, written atomically (a killed run leaves the old file)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def _md(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _ppl(x: float) -> str:
    return "inf" if not math.isfinite(x) else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")


def counts_table(counts: Mapping[str, Mapping[str, Sequence[int]]], jaccard: Mapping[str, float]) -> str:
    """Per detector: total neurons in each set (per-language, shared, exclusive) and the PLND/LAPE Jaccard."""
    detectors = list(counts)
    names = list(next(iter(counts.values())))
    rows = [[name, *(int(np.sum(counts[d][name])) for d in detectors)] for name in names]
    rows += [[f"Jaccard PLND vs LAPE ({k})", *([f"{v:.3f}"] + [""] * (len(detectors) - 1))] for k, v in jaccard.items()]
    return _md(["set", *detectors], rows)


def plot_counts(counts: Mapping[str, Mapping[str, Sequence[int]]], path: Path, title: str) -> Path:
    """Heat map per detector: rows = layers, columns = shared and each language's exclusive count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detectors = list(counts)
    fig, axes = plt.subplots(1, len(detectors), figsize=(4.2 * len(detectors), 6), squeeze=False)
    for ax, det in zip(axes[0], detectors):
        cols = [k for k in counts[det] if k == "shared" or k.startswith("exclusive")]
        grid = np.asarray([counts[det][c] for c in cols], np.float64).T  # [L, cols]
        im = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower")
        ax.set_xticks(range(len(cols)), [c.replace("exclusive:", "excl ") for c in cols], rotation=45, ha="right")
        ax.set_ylabel("layer")
        ax.set_title(det)
        for (i, j), v in np.ndenumerate(grid):
            if grid.shape[0] <= 40:
                ax.text(
                    j,
                    i,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if v < grid.max() / 2 else "black",
                )
        fig.colorbar(im, ax=ax, shrink=0.8, label="neurons")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def deactivation_table(base: Mapping[str, dict], conditions: Sequence[dict], langs: Sequence[str]) -> str:
    """Rows = conditions (with their neuron count), columns = languages: perplexity and ratio to intact."""
    rows = [["intact", 0, *(_ppl(base[lang]["ppl"]) for lang in langs)]]
    for c in conditions:
        cells = []
        for lang in langs:
            r = c["ratio"][lang]
            star = "*" if r["significant"] else ""
            cells.append(f"{_ppl(c['ppl'][lang]['ppl'])} (x{r['ratio']:.3f}{star})")
        rows.append([c["name"], c["neurons"], *cells])
    return _md(["deactivated", "neurons", *langs], rows)


def plot_deactivation(
    base: Mapping[str, dict], conditions: Sequence[dict], langs: Sequence[str], path: Path, title: str
) -> Path:
    """Grouped bars: per language, the perplexity ratio to the intact model under each condition (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(langs) + 0.25 * len(conditions)), 4.2))
    width = 0.8 / max(len(conditions), 1)
    x = np.arange(len(langs))
    for i, c in enumerate(conditions):
        vals = [min(c["ratio"][lang]["ratio"], 1e6) for lang in langs]
        ax.bar(x + (i - (len(conditions) - 1) / 2) * width, vals, width, label=f"{c['name']} ({c['neurons']})")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(x, langs)
    ax.set_yscale("log")
    ax.set_ylabel("perplexity / intact perplexity")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def training_table(
    before: Mapping[str, dict], tracks: Sequence[dict], langs: Sequence[str], mgsm_langs: Sequence[str]
) -> str:
    """Rows = before and each training track; columns = per-language perplexity (ratio to before) and MGSM."""
    head = ["model", "trained neurons", *(f"ppl {lang}" for lang in langs), *(f"MGSM {lang}" for lang in mgsm_langs)]
    rows = [
        [
            "before",
            "-",
            *(_ppl(before["ppl"][lang]["ppl"]) for lang in langs),
            *(f"{before['mgsm'][lang]['acc']:.3f}" for lang in mgsm_langs),
        ]
    ]
    for t in tracks:
        cells = [
            f"{_ppl(t['ppl'][lang]['ppl'])} (x{t['ratio'][lang]['ratio']:.3f}"
            f"{'*' if t['ratio'][lang]['significant'] else ''})"
            for lang in langs
        ]
        cells += [f"{t['mgsm'][lang]['acc']:.3f}" for lang in mgsm_langs]
        rows.append([t["name"], t["neurons"], *cells])
    return _md(head, rows)


def development_table(rows: Sequence[dict]) -> str:
    """Per checkpoint and detector: shared neurons, language-related neurons (union), shared ratio."""
    return _md(
        ["checkpoint", "detector", "shared", "union of languages", "shared ratio"],
        [[r["model"], r["detector"], r["shared"], r["union"], f"{r['ratio']:.3f}"] for r in rows],
    )
