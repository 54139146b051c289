"""The Text2Vis benchmark metric (vis-nlp/Text2Vis ``eval_predictions.py``), with per-kind breakdown and outputs.

Per sample: answer match (0/1 from the text judge), execution (0/1), readability and chart
correctness (0-5 in half steps from the visual judge; 0 and 0 when there is no chart).  The final
score (pass) is 1 iff the answer matches, the code executed and both chart scores are >= 3.5.
Reported, overall and per question kind: answer accuracy, execution rate, mean readability, mean
correctness and pass rate (the benchmark's headline number).  Outputs: ``results.json``, a markdown
table and a PNG grid of sample charts with their scores.

This is the benchmark metric, not the RL-Text2Vis training reward (:mod:`experiments.text2vis.reward`).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["PASS_THRESHOLD", "SampleScore", "chart_grid", "summarize", "to_markdown", "write_outputs"]

PASS_THRESHOLD = 3.5


@dataclass(frozen=True)
class SampleScore:
    """One judged sample; ``png`` (the rendered chart) is kept for the grid but never written to JSON."""

    id: str
    kind: str
    answer_match: bool
    executed: bool
    readability: float
    correctness: float
    question: str = ""
    status: str = ""
    png: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("answer_match", "executed"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"SampleScore.{name}: expected bool, got {getattr(self, name)!r} (sample {self.id!r})")
        for name in ("readability", "correctness"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or not 0 <= v <= 5
                or v * 2 != int(v * 2)
            ):
                raise ValueError(f"SampleScore.{name}: expected 0-5 in half steps, got {v!r} (sample {self.id!r})")

    @property
    def passed(self) -> bool:
        return (
            self.answer_match
            and self.executed
            and self.readability >= PASS_THRESHOLD
            and self.correctness >= PASS_THRESHOLD
        )

    def row(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "png"}
        d["passed"] = self.passed
        return d


def _aggregate(samples: Sequence[SampleScore]) -> dict[str, float]:
    n = len(samples)
    return {
        "n": n,
        "answer_accuracy": sum(s.answer_match for s in samples) / n,
        "execution_rate": sum(s.executed for s in samples) / n,
        "mean_readability": sum(s.readability for s in samples) / n,
        "mean_correctness": sum(s.correctness for s in samples) / n,
        "pass_rate": sum(s.passed for s in samples) / n,
    }


def summarize(samples: Sequence[SampleScore]) -> dict[str, Any]:
    """``{"overall": {...}, "per_kind": {kind: {...}}}``; rates are fractions in [0, 1]."""
    if not samples:
        raise ValueError("samples: the metric needs at least one judged sample")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("samples: sample ids repeat; each task must be judged once")
    kinds = sorted({s.kind for s in samples})
    return {
        "overall": _aggregate(samples),
        "per_kind": {k: _aggregate([s for s in samples if s.kind == k]) for k in kinds},
    }


def to_markdown(summary: dict[str, Any]) -> str:
    """One row per kind plus the overall row; rates in percent, scores on the 0-5 scale."""
    head = (
        "| kind | n | answer acc. % | execution % | readability (0-5) | correctness (0-5) | pass % |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
    )

    def line(name: str, m: dict[str, float]) -> str:
        return (
            f"| {name} | {m['n']} | {100 * m['answer_accuracy']:.1f} | {100 * m['execution_rate']:.1f} | "
            f"{m['mean_readability']:.2f} | {m['mean_correctness']:.2f} | {100 * m['pass_rate']:.1f} |\n"
        )

    rows = "".join(line(k, m) for k, m in summary["per_kind"].items())
    return head + rows + line("**all**", summary["overall"])


def _label(s: SampleScore) -> str:
    mark = {True: "yes", False: "no"}
    return (
        f"{s.id[-28:]} [{s.kind}]\nmatch {mark[s.answer_match]} | exec {mark[s.executed]} | "
        f"R {s.readability:g} C {s.correctness:g} | {'PASS' if s.passed else 'fail'}"
    )


def chart_grid(samples: Sequence[SampleScore], path: str | Path, *, n: int = 12, cols: int = 4) -> Path:
    """A PNG grid of the first ``n`` samples: the chart (or why there is none) under its scores."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    if n < 1 or cols < 1:
        raise ValueError(f"n, cols: expected positive counts, got n={n!r}, cols={cols!r}")
    shown = list(samples)[:n]
    if not shown:
        raise ValueError("samples: nothing to draw")
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, shown):
        img = None
        if s.png:
            try:
                img = mpimg.imread(io.BytesIO(s.png), format="png")
            except (ValueError, OSError, SyntaxError):
                img = None
        if img is not None:
            ax.imshow(img)
        else:
            ax.text(
                0.5,
                0.5,
                f"no chart\n({s.status or 'not executed'})",
                ha="center",
                va="center",
                fontsize=11,
                color="tab:red",
                transform=ax.transAxes,
            )
        ax.set_title(_label(s), fontsize=8, color="tab:green" if s.passed else "black")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def write_outputs(
    samples: Sequence[SampleScore], out_dir: str | Path, *, extra: dict[str, Any] | None = None, grid_n: int = 12
) -> dict[str, Path]:
    """Write ``results.json`` (summary, per-sample rows, ``extra``), ``results.md`` and ``charts.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(samples)
    payload = {
        **(extra or {}),
        "metric": "text2vis",
        "pass_threshold": PASS_THRESHOLD,
        **summary,
        "samples": [s.row() for s in samples],
    }
    paths = {"json": out / "results.json", "md": out / "results.md", "png": out / "charts.png"}
    paths["json"].write_text(json.dumps(payload, indent=2))
    paths["md"].write_text(to_markdown(summary))
    chart_grid(samples, paths["png"], n=grid_n)
    return paths
