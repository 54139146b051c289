"""The vega task generator: gold answers recomputed from the CSV rows with plain Python/numpy, gold code run
in the sandbox, seeds reproduce, and train / held-out share no table and no template."""

import csv
import io
import json
import math

import numpy as np
import pytest

from experiments.text2vis import generator as gen
from experiments.text2vis.generator import TEMPLATES, fmt_number, make_tasks, make_tasks_with_params
from experiments.text2vis.tasks import KINDS
from experiments.text2vis.views import HELDOUT_TABLES, MAX_ROWS, TRAIN_TABLES, VIEWS
from jaxlab.sandbox import run_python


def _columns(table_csv: str) -> tuple[list[str], dict[str, list[str]]]:
    rows = list(csv.reader(io.StringIO(table_csv)))
    header, body = rows[0], rows[1:]
    return [r[0] for r in body], {h: [r[j] for r in body] for j, h in enumerate(header)}


def _recompute(task, p) -> object:
    """The gold answer from the CSV text alone: csv module + floats + numpy, no pandas."""
    _, cols = _columns(task.table_csv)
    labels = cols[p["label"]] if p["label"] else None

    def vals(name):
        return [float(v) for v in cols[name]]

    def at(name):
        return vals(p["value"])[labels.index(name)]

    v = vals(p["value"])
    t = task.template
    if t in ("ext_max", "ext_min"):
        return labels[int(np.argmax(v) if t == "ext_max" else np.argmin(v))]
    if t == "agg_mean":
        return sum(v) / len(v)
    if t == "agg_sum":
        return math.fsum(v)
    if t == "cmp_higher":
        return p["a"] if at(p["a"]) > at(p["b"]) else p["b"]
    if t == "cmp_diff":
        return at(p["a"]) - at(p["b"])
    if t == "trend_slope":
        slope = np.polyfit(np.arange(len(v)), np.array(v), 1)[0]
        return "increasing" if slope > 0 else "decreasing"
    if t == "trend_rise":
        rises = [v[i] - v[i - 1] for i in range(1, len(v))]
        return labels[1 + rises.index(max(rises))]
    if t in ("corr_r", "corr_sign"):
        x, y = np.array(vals(p["x"])), np.array(vals(p["y"]))
        xc, yc = x - x.mean(), y - y.mean()
        r = float((xc * yc).sum() / math.sqrt((xc**2).sum() * (yc**2).sum()))
        return r if t == "corr_r" else ("positive" if r > 0 else "negative")
    if t in ("topk_high", "topk_low"):
        order = sorted(range(len(v)), key=lambda i: v[i], reverse=t == "topk_high")
        return [labels[i] for i in order[: p["k"]]]
    if t == "pct_change":
        return (at(p["b"]) - at(p["a"])) / abs(at(p["a"])) * 100
    if t == "pct_relative":
        return (at(p["a"]) - at(p["b"])) / abs(at(p["b"])) * 100
    raise AssertionError(f"no reference for template {t}")


@pytest.fixture(scope="module")
def drawn():
    return {split: make_tasks_with_params(split, 70, seed=s) for split, s in (("train", 0), ("heldout", 1))}


def test_gold_answers_match_an_independent_computation(drawn):
    checked = set()
    for pairs in drawn.values():
        for task, p in pairs:
            ref = _recompute(task, p)
            if isinstance(ref, float):
                assert abs(float(task.answer) - ref) <= 0.005 + 1e-9, (task.id, task.answer, ref)
            elif isinstance(ref, list):
                assert json.loads(task.answer) == ref, task.id
            else:
                assert task.answer == ref, task.id
            checked.add(task.template)
    assert checked == {t.id for t in TEMPLATES}


def test_every_kind_in_both_splits_and_tables_are_small(drawn):
    for split, pairs in drawn.items():
        assert {t.kind for t, _ in pairs} == set(KINDS) - {"text2vis"}
        for t, _ in pairs:
            assert t.split == split and len(t.table_csv.strip().splitlines()) - 1 <= MAX_ROWS
            assert t.gold_code.rstrip().endswith("plt.show()") and 'pd.read_csv("table.csv")' in t.gold_code


def test_splits_disjoint_by_table_and_template(drawn):
    train, held = drawn["train"], drawn["heldout"]
    assert {t.table_name for t, _ in train} <= TRAIN_TABLES and {t.table_name for t, _ in held} <= HELDOUT_TABLES
    assert not {t.table_name for t, _ in train} & {t.table_name for t, _ in held}
    assert not {t.template for t, _ in train} & {t.template for t, _ in held}
    assert not {t.table_csv for t, _ in train} & {t.table_csv for t, _ in held}
    assert not TRAIN_TABLES & HELDOUT_TABLES and TRAIN_TABLES | HELDOUT_TABLES == {v.table for v in VIEWS}


def test_seed_reproduces_and_differs():
    a, b, c = make_tasks("train", 12, seed=5), make_tasks("train", 12, seed=5), make_tasks("train", 12, seed=6)
    assert a == b and a != c
    assert len({(t.question, t.table_csv) for t in a}) == len(a)  # no repeats inside a draw


def test_exhausted_kinds_stop_with_a_clear_error(monkeypatch):
    tiny = next(v for v in VIEWS if v.name == "iris_by_species")  # 3 fixed rows: few distinct tasks exist
    monkeypatch.setattr(gen, "views_for", lambda split: (tiny,))
    with pytest.raises(RuntimeError, match="distinct train tasks exist"):
        make_tasks_with_params("train", 500, seed=0, max_tries=20)
    with pytest.raises(ValueError, match="split"):
        make_tasks("test", 3)


def test_fmt_number():
    assert [fmt_number(x) for x in (3.0, -2.0, 1.005e3, 0.1234, -0.001, 12.346)] == [
        "3",
        "-2",
        "1005",
        "0.12",
        "0",
        "12.35",
    ]
    with pytest.raises(gen.Skip):
        fmt_number(float("nan"))


_BATCH = r"""
import io, json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
jobs = json.loads(sys.stdin.read())
out = []
for i, (code, table) in enumerate(jobs):
    d = os.path.join(os.getcwd(), f"job{i}")
    os.mkdir(d)
    os.chdir(d)
    with open("table.csv", "w") as f:
        f.write(table)
    shown = []
    plt.show = lambda *a, **k: shown.append(len(plt.get_fignums()))
    try:
        exec(compile(code, f"gold{i}", "exec"), {"__name__": "__main__"})
        buf = io.BytesIO()
        fig = plt.gcf() if plt.get_fignums() else None
        marks = sum(len(ax.patches) + len(ax.lines) + len(ax.collections) for ax in fig.axes) if fig else 0
        if fig:
            fig.savefig(buf, format="png")
        out.append({"ok": True, "shown": shown, "png": buf.getvalue()[:8].hex(), "marks": marks})
    except Exception as e:
        out.append({"ok": False, "error": repr(e)})
    plt.close("all")
print("RESULT" + json.dumps(out))
"""


def _covering(drawn) -> list:
    """A few tasks that together use every template, every view and both aggregate chart shapes."""
    picked, seen = [], set()
    for t, p in (pair for pairs in drawn.values() for pair in pairs):
        keys = {("template", t.template), ("view", p["view"]), ("unnamed", p["label"] is None)}
        if keys - seen:
            picked.append(t)
            seen |= keys
    return picked


def _run_gold_in_sandbox(tasks) -> None:
    r = run_python(_BATCH, stdin=json.dumps([[t.gold_code, t.table_csv] for t in tasks]), timeout_s=120, memory_mb=2048)
    assert r.ok, r.stderr[-2000:]
    results = json.loads(r.stdout.split("RESULT", 1)[1])
    assert len(results) == len(tasks)
    for t, res in zip(tasks, results):
        assert res["ok"], (t.id, res.get("error"))
        assert res["shown"] == [1], t.id  # plt.show() called once with one open figure
        assert res["png"] == "89504e470d0a1a0a" and res["marks"] >= 1, t.id


def test_gold_code_of_every_template_and_view_runs_in_the_sandbox_and_draws(drawn):
    tasks = _covering(drawn)
    assert {t.template for t in tasks} == {t.id for t in TEMPLATES}
    _run_gold_in_sandbox(tasks)


@pytest.mark.slow
def test_every_drawn_gold_code_runs_in_the_sandbox(drawn):
    _run_gold_in_sandbox([t for pairs in drawn.values() for t, _ in pairs])
