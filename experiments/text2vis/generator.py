"""A seeded Text2Vis task generator over real vega tables: questions of seven kinds with pandas gold.

Fourteen question templates, two per kind; one of each pair is train-only and the other held-out
only, and the tables are split too (:mod:`experiments.text2vis.views`), so a held-out task has both
a table and a wording the policy never trained on.  The gold answer is computed with pandas from
the table *as the prompt shows it* (the CSV is written, read back, and only then used), so gold,
prompt and the ``table.csv`` that chart code reads never disagree by a rounding step.  Gold code is
matplotlib that reads ``table.csv`` and ends with ``plt.show()``.

``make_tasks_with_params`` also returns each task's parameters (columns, row labels, k) so the
tests can recompute every gold answer independently.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from experiments.text2vis.tasks import Text2VisTask
from experiments.text2vis.views import ViewTable, table_csv, views_for

__all__ = ["TEMPLATES", "Template", "fmt_number", "make_tasks", "make_tasks_with_params"]


class Skip(Exception):
    """This template does not fit this table draw (a tie, a zero base, too few rows): draw again."""


def fmt_number(x: float) -> str:
    """Integers without decimals, everything else with two (the precision every question asks for)."""
    x = float(x)
    if not np.isfinite(x):
        raise Skip("non-finite answer")
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    text = f"{x:.2f}"
    return "0" if text in ("-0.00", "0.00") else text


def _labels(df: pd.DataFrame, p: dict) -> list[str]:
    return [str(v) for v in df[p["label"]]]


def _unique_best(values: pd.Series, labels: list[str], lowest: bool) -> str:
    order = values.sort_values(ascending=lowest, kind="stable")
    if len(order) > 1 and order.iloc[0] == order.iloc[1]:
        raise Skip("tie at the extremum")
    return labels[order.index[0]]


def _top(df: pd.DataFrame, p: dict, lowest: bool) -> str:
    order = df[p["value"]].sort_values(ascending=lowest, kind="stable")
    k = p["k"]
    if order.iloc[k - 1] == order.iloc[k]:
        raise Skip("tie at the k-th place")
    labels = _labels(df, p)
    return json.dumps([labels[i] for i in order.index[:k]])


def _row(df: pd.DataFrame, p: dict, key: str) -> float:
    return float(df.loc[df[p["label"]].astype(str) == p[key], p["value"]].iloc[0])


def _pct(new: float, base: float) -> str:
    if abs(base) < 1e-9:
        raise Skip("zero base for a percentage")
    return fmt_number((new - base) / abs(base) * 100.0)


def _slope_sign(df: pd.DataFrame, p: dict) -> str:
    y = df[p["value"]].to_numpy(float)
    r = np.corrcoef(np.arange(len(y)), y)[0, 1]
    if not abs(r) >= 0.3:
        raise Skip("no clear trend")
    return "increasing" if r > 0 else "decreasing"


def _largest_rise(df: pd.DataFrame, p: dict) -> str:
    diffs = df[p["value"]].diff().iloc[1:]
    if diffs.max() <= 0:
        raise Skip("never rises")
    return _unique_best(diffs, _labels(df, p), lowest=False)


def _corr(df: pd.DataFrame, p: dict) -> float:
    r = df[p["x"]].corr(df[p["y"]])
    if not np.isfinite(r):
        raise Skip("constant column")
    return float(r)


def _corr_sign(df: pd.DataFrame, p: dict) -> str:
    r = _corr(df, p)
    if abs(r) < 0.2:
        raise Skip("weak correlation")
    return "positive" if r > 0 else "negative"


_HEAD = 'import pandas as pd\nimport matplotlib.pyplot as plt\n\ndf = pd.read_csv("table.csv")\n'
_TAIL = "plt.tight_layout()\nplt.show()\n"


def _bar_code(p: dict, highlight: str, title: str, sub: str = "df") -> str:
    """A bar chart of ``value`` per ``label`` over the rows ``sub``, bars named in ``highlight`` in orange."""
    lab, val = repr(p["label"]), repr(p["value"])
    return (
        f"{_HEAD}sub = {sub}\nnames = sub[{lab}].astype(str)\n"
        f"colors = ['tab:orange' if n in {highlight} else 'tab:blue' for n in names]\n"
        f"plt.figure(figsize=(8, 4.5))\nplt.bar(names, sub[{val}], color=colors)\n"
        f"plt.title({title!r})\nplt.xlabel({lab})\nplt.ylabel({val})\nplt.xticks(rotation=45, ha='right')\n{_TAIL}"
    )


def _line_code(p: dict, title: str) -> str:
    lab, val = repr(p["label"]), repr(p["value"])
    return (
        f"{_HEAD}plt.figure(figsize=(8, 4.5))\nplt.plot(df[{lab}].astype(str), df[{val}], marker='o')\n"
        f"plt.title({title!r})\nplt.xlabel({lab})\nplt.ylabel({val})\nplt.xticks(rotation=45, ha='right')\n{_TAIL}"
    )


def _scatter_code(p: dict, title: str) -> str:
    x, y = repr(p["x"]), repr(p["y"])
    return (
        f"{_HEAD}plt.figure(figsize=(6, 4.5))\nplt.scatter(df[{x}], df[{y}])\n"
        f"plt.title({title!r})\nplt.xlabel({x})\nplt.ylabel({y})\n{_TAIL}"
    )


def _agg_code(p: dict, how: str, answer: str) -> str:
    val = repr(p["value"])
    if p["label"] is None:
        return (
            f"{_HEAD}plt.figure(figsize=(6, 4.5))\nplt.hist(df[{val}], bins=8)\n"
            f"plt.title({how + ' of ' + p['value'] + ': ' + answer!r})\n"
            f"plt.xlabel({val})\nplt.ylabel('count')\n{_TAIL}"
        )
    code = _bar_code(p, "[]", f"{p['value']} by {p['label']} ({how}: {answer})")
    if how == "mean":
        code = code.replace(
            "plt.title(",
            f"plt.axhline(df[{val}].mean(), color='tab:red', linestyle='--', label='mean')\nplt.legend()\nplt.title(",
            1,
        )
    return code


@dataclass(frozen=True)
class Template:
    id: str
    kind: str
    split: str  # train | heldout
    question: str
    needs: str  # label | time | pair | any
    answer: Callable[[pd.DataFrame, dict], str]
    code: Callable[[dict, str], str]
    min_rows: int = 3


TEMPLATES = (
    Template(
        "ext_max",
        "extremum",
        "train",
        "Which {label} has the highest {value}?",
        "label",
        lambda d, p: _unique_best(d[p["value"]], _labels(d, p), lowest=False),
        lambda p, a: _bar_code(p, repr([a]), f"{p['value']} by {p['label']} (highest: {a})"),
    ),
    Template(
        "ext_min",
        "extremum",
        "heldout",
        "Which {label} shows the lowest {value}?",
        "label",
        lambda d, p: _unique_best(d[p["value"]], _labels(d, p), lowest=True),
        lambda p, a: _bar_code(p, repr([a]), f"{p['value']} by {p['label']} (lowest: {a})"),
    ),
    Template(
        "agg_mean",
        "aggregate",
        "train",
        "What is the average {value} across all rows of the table? Round to two decimals.",
        "any",
        lambda d, p: fmt_number(d[p["value"]].mean()),
        lambda p, a: _agg_code(p, "mean", a),
    ),
    Template(
        "agg_sum",
        "aggregate",
        "heldout",
        "What is the total of {value} summed over every row?",
        "any",
        lambda d, p: fmt_number(d[p["value"]].sum()),
        lambda p, a: _agg_code(p, "total", a),
    ),
    Template(
        "cmp_higher",
        "comparison",
        "train",
        "Which has the higher {value}: {a} or {b}?",
        "label",
        lambda d, p: _unique_best(pd.Series([_row(d, p, "a"), _row(d, p, "b")]), [p["a"], p["b"]], False),
        lambda p, a: _bar_code(
            p,
            repr([a]),
            f"{p['value']}: {p['a']} vs {p['b']}",
            f"df[df[{p['label']!r}].astype(str).isin({[p['a'], p['b']]!r})]",
        ),
    ),
    Template(
        "cmp_diff",
        "comparison",
        "heldout",
        "By how much does the {value} of {a} exceed that of {b}? Round to two decimals.",
        "label",
        lambda d, p: fmt_number(_row(d, p, "a") - _row(d, p, "b")),
        lambda p, a: _bar_code(
            p,
            repr([p["a"]]),
            f"{p['value']}: {p['a']} exceeds {p['b']} by {a}",
            f"df[df[{p['label']!r}].astype(str).isin({[p['a'], p['b']]!r})]",
        ),
    ),
    Template(
        "trend_slope",
        "trend",
        "train",
        "Over the {label}s shown, is {value} generally increasing or decreasing?",
        "time",
        _slope_sign,
        lambda p, a: _line_code(p, f"{p['value']} over {p['label']} ({a})"),
        min_rows=6,
    ),
    Template(
        "trend_rise",
        "trend",
        "heldout",
        "In which {label} did {value} rise the most compared with the previous {label}?",
        "time",
        _largest_rise,
        lambda p, a: _line_code(p, f"{p['value']} over {p['label']} (largest rise: {a})"),
        min_rows=6,
    ),
    Template(
        "corr_r",
        "correlation",
        "train",
        "What is the Pearson correlation between {x} and {y}? Round to two decimals.",
        "pair",
        lambda d, p: fmt_number(_corr(d, p)),
        lambda p, a: _scatter_code(p, f"{p['y']} vs {p['x']} (r = {a})"),
        min_rows=8,
    ),
    Template(
        "corr_sign",
        "correlation",
        "heldout",
        "Are {x} and {y} positively or negatively correlated? Answer positive or negative.",
        "pair",
        _corr_sign,
        lambda p, a: _scatter_code(p, f"{p['y']} vs {p['x']} ({a} correlation)"),
        min_rows=8,
    ),
    Template(
        "topk_high",
        "top_k",
        "train",
        "List the {k} values of {label} with the highest {value}, from highest to lowest.",
        "label",
        lambda d, p: _top(d, p, lowest=False),
        lambda p, a: _bar_code(
            p, "[]", f"Top {p['k']} {p['label']} by {p['value']}", f"df.nlargest({p['k']}, {p['value']!r})"
        ),
        min_rows=5,
    ),
    Template(
        "topk_low",
        "top_k",
        "heldout",
        "Which {k} values of {label} have the lowest {value}? List them from lowest to highest.",
        "label",
        lambda d, p: _top(d, p, lowest=True),
        lambda p, a: _bar_code(
            p, "[]", f"Lowest {p['k']} {p['label']} by {p['value']}", f"df.nsmallest({p['k']}, {p['value']!r})"
        ),
        min_rows=5,
    ),
    Template(
        "pct_change",
        "pct_change",
        "train",
        "By what percentage did {value} change from {a} to {b}? Round to two decimals.",
        "time",
        lambda d, p: _pct(_row(d, p, "b"), _row(d, p, "a")),
        lambda p, a: _bar_code(
            p,
            repr([p["a"], p["b"]]),
            f"{p['value']}: {p['a']} to {p['b']} ({a}%)",
            f"df[df[{p['label']!r}].astype(str).isin({[p['a'], p['b']]!r})]",
        ),
    ),
    Template(
        "pct_relative",
        "pct_change",
        "heldout",
        "How many percent higher or lower is the {value} of {a} than that of {b}? Round to two decimals.",
        "label",
        lambda d, p: _pct(_row(d, p, "a"), _row(d, p, "b")),
        lambda p, a: _bar_code(
            p,
            repr([p["a"]]),
            f"{p['value']}: {p['a']} vs {p['b']} ({a}%)",
            f"df[df[{p['label']!r}].astype(str).isin({[p['a'], p['b']]!r})]",
        ),
    ),
)


def _fits(t: Template, vt: ViewTable) -> bool:
    if len(vt.frame) < t.min_rows:
        return False
    return {
        "any": True,
        "label": vt.label is not None,
        "time": vt.time and vt.label is not None,
        "pair": len(vt.values) >= 2,
    }[t.needs]


def _params(t: Template, vt: ViewTable, df: pd.DataFrame, rng: random.Random) -> dict[str, Any]:
    p: dict[str, Any] = {"label": vt.label, "value": rng.choice(vt.values)}
    if t.needs == "pair":
        p["x"], p["y"] = rng.sample(list(vt.values), 2)
    if t.kind in ("comparison", "pct_change"):
        i, j = sorted(rng.sample(range(len(df)), 2))
        if t.id == "pct_relative" or t.kind == "comparison":
            i, j = rng.sample([i, j], 2)
        p["a"], p["b"] = str(df[vt.label].iloc[i]), str(df[vt.label].iloc[j])
        if t.id == "cmp_diff" and _row(df, p, "a") < _row(df, p, "b"):
            p["a"], p["b"] = p["b"], p["a"]  # "exceeds" asks for a non-negative gap
    if t.kind == "top_k":
        p["k"] = rng.randint(2, min(5, len(df) - 1))
    return p


def make_tasks_with_params(
    split: str, n: int, seed: int = 0, max_tries: int = 200
) -> list[tuple[Text2VisTask, dict[str, Any]]]:
    """``n`` distinct tasks of ``split`` (``train`` | ``heldout``) with their parameters; same seed, same tasks.

    Kinds are visited round robin so every kind appears until it runs out of distinct tasks (the
    held-out tables are few); each draw picks a view, its variant and a template that fits it, and
    draws again on a tie, a degenerate case (:class:`Skip`) or a repeat.
    """
    if n < 0:
        raise ValueError(f"n: expected a non-negative task count, got {n!r}")
    if split not in ("train", "heldout"):
        raise ValueError(f"split: the generator makes 'train' or 'heldout' tasks, got {split!r}")
    views = views_for(split)
    templates = [t for t in TEMPLATES if t.split == split]
    live = sorted({t.kind for t in templates})  # kinds that can still give a new distinct task
    rng = random.Random(f"text2vis-{split}-{seed}")
    out: list[tuple[Text2VisTask, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    misses = {k: 0 for k in live}
    turn = 0
    while len(out) < n:
        if not live:
            raise RuntimeError(f"text2vis generator: only {len(out)} distinct {split} tasks exist, asked for {n}")
        kind = live[turn % len(live)]
        draw = _draw(kind, views, templates, rng, split, seed, len(out), seen)
        if draw is None:
            misses[kind] += 1
            if misses[kind] >= max_tries:  # this kind is exhausted (or always degenerate): keep the others going
                live.remove(kind)
            continue
        misses[kind] = 0
        turn += 1
        out.append(draw)
    return out


def _draw(
    kind: str,
    views: tuple,
    templates: list[Template],
    rng: random.Random,
    split: str,
    seed: int,
    index: int,
    seen: set[tuple[str, str]],
) -> tuple[Text2VisTask, dict[str, Any]] | None:
    """One attempt at a new task of ``kind``; ``None`` when the draw does not fit or repeats a task."""
    view = rng.choice(views)
    vt = view.build(rng)
    fitting = [t for t in templates if t.kind == kind and _fits(t, vt)]
    if not fitting:
        return None
    t = rng.choice(fitting)
    csv_text = table_csv(vt)
    df = pd.read_csv(io.StringIO(csv_text))
    try:
        p = _params(t, vt, df, rng)
        answer = t.answer(df, p)
    except Skip:
        return None
    question = t.question.format(**p)
    if (question, csv_text) in seen:
        return None
    seen.add((question, csv_text))
    task = Text2VisTask(
        id=f"{split}-{seed}-{index:04d}-{view.name}-{t.id}",
        question=question,
        answer=answer,
        table_csv=csv_text,
        kind=t.kind,
        gold_code=t.code(p, answer),
        split=split,
        table_name=view.table,
        template=t.id,
    )
    return task, {**p, "view": view.name, "variant": vt.variant}


def make_tasks(split: str, n: int, seed: int = 0) -> list[Text2VisTask]:
    """The tasks of :func:`make_tasks_with_params` without their parameters."""
    return [task for task, _ in make_tasks_with_params(split, n, seed)]
