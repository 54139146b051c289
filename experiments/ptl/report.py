"""Results table (printed and JSON) and the quality-vs-parameters plot, PTL against the baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

COLUMNS = [
    ("track", "{}"),
    ("stage", "{}"),
    ("params", "{:.2f}M"),
    ("code_ppl", "{:.3f}"),
    ("text_ppl", "{:.3f}"),
    ("accuracy", "{:.3f}"),
    ("gsm8k", "{:.3f}"),
    ("tokens", "{}"),
]
BASELINES = ("one_shot", "random", "no_tune")


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    text = fmt.format(value / 1e6 if key == "params" else value)
    ci = row.get(f"{key}_ci")
    if ci is not None:
        text += " [" + ", ".join(fmt.format(c) for c in ci) + "]"
    return text


def format_table(rows: Sequence[dict]) -> str:
    """A fixed-width table: track, stage, params, code/English perplexity, task accuracy, GSM8K, tuning tokens.

    Metrics print with their 95% bootstrap interval in brackets; a metric a row lacks prints ``-``
    (the ``gsm8k`` column is dropped when no row has it).
    """
    cols = [(k, f) for k, f in COLUMNS if k != "gsm8k" or any("gsm8k" in r for r in rows)]
    body = [[_cell(r, k, f) for k, f in cols] for r in rows]
    heads = [k for k, _ in cols]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, body)])


def final_rows(rows: Sequence[dict]) -> dict[str, dict]:
    """The last evaluated row of each track."""
    out: dict[str, dict] = {}
    for r in rows:
        if "per_window" in r:
            out[r["track"]] = r
    return out


def compare(rows: Sequence[dict]) -> list[dict]:
    """Paired comparisons of the final PTL row against each baseline's final row (same windows, same items).

    Perplexity: ``ptl / baseline`` ratio with a paired bootstrap interval (below 1 = PTL better);
    accuracy metrics: ``ptl - baseline`` with a paired bootstrap interval. ``significant``: the 95%
    interval excludes no difference.
    """
    from experiments.ptl.evaluate import paired_difference, paired_ratio

    final = final_rows(rows)
    if "ptl" not in final:
        return []
    a = final["ptl"]
    out = []
    for name in ("base", *BASELINES):
        if name not in final:
            continue
        b = final[name]
        for corpus in ("code", "text"):
            (na, ta), (nb, _) = a["per_window"][corpus], b["per_window"][corpus]  # same windows
            r = paired_ratio(na, nb, ta)
            out.append(
                {
                    "vs": name,
                    "metric": f"{corpus}_ppl",
                    "kind": "ratio",
                    "value": r["ratio"],
                    "ci": list(r["ci"]),
                    "significant": r["significant"],
                }
            )
        for metric in sorted(set(a.get("per_item", {})) & set(b.get("per_item", {}))):
            if not a["per_item"][metric]:
                continue
            dfr = paired_difference(a["per_item"][metric], b["per_item"][metric])
            out.append(
                {
                    "vs": name,
                    "metric": metric,
                    "kind": "difference",
                    "value": dfr["diff"],
                    "ci": list(dfr["ci"]),
                    "significant": dfr["significant"],
                }
            )
    return out


def format_comparisons(comparisons: Sequence[dict]) -> str:
    """One line per comparison: ``PTL vs <baseline>  <metric>  <value> [lo, hi]  (significant | n.s.)``."""
    if not comparisons:
        return "(no PTL-vs-baseline comparison: no final PTL row)"
    lines = [
        "PTL vs baseline, paired 95% bootstrap (ppl: ratio ptl/baseline, <1 = PTL better; "
        "accuracy: difference ptl - baseline)"
    ]
    for c in comparisons:
        sig = "significant" if c["significant"] else "n.s."
        lines.append(
            f"  vs {c['vs']:<9} {c['metric']:<9} {c['value']:8.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]  {sig}"
        )
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=float))


def plot_quality(rows: Sequence[dict], path: Path, title: str) -> Path:
    """Two panels (code and text perplexity, log scale) against parameter count, one curve per track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    base = [r for r in rows if r["track"] == "base"]
    styles = {
        "ptl": ("C0", "o-", "PTL (prune-tune stages)"),
        "one_shot": ("C3", "s--", "one-shot + tune"),
        "random": ("C2", "^--", "random one-shot + tune"),
        "no_tune": ("C7", "x:", "one-shot, no tune"),
    }
    for ax, key, name in (
        (axes[0], "code_ppl", "held-out code perplexity"),
        (axes[1], "text_ppl", "held-out English perplexity"),
    ):
        for track, (color, style, label) in styles.items():
            pts = [p for p in base + [r for r in rows if r["track"] == track] if key in p]
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
