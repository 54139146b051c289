"""The Text2Vis benchmark metric on a hand-computed fixture, against a pandas reference, and its outputs."""

import io
import json
import random

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from experiments.text2vis.metric import SampleScore, summarize, to_markdown, write_outputs


def _png() -> bytes:
    fig = plt.figure(figsize=(2, 2))
    plt.bar(["a", "b"], [1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


FIXTURE = [  # id, kind, match, executed, readability, correctness -> pass by hand
    ("s1", "extremum", True, True, 4.0, 4.0),  # pass
    ("s2", "extremum", True, True, 3.5, 3.0),  # correctness < 3.5
    ("s3", "extremum", False, True, 5.0, 5.0),  # answer wrong
    ("s4", "trend", True, False, 0.0, 0.0),  # did not execute
    ("s5", "trend", True, True, 3.5, 3.5),  # pass at the threshold
    ("s6", "trend", False, False, 0.0, 0.0),
]


def _samples(png: bytes | None = None) -> list[SampleScore]:
    return [SampleScore(i, k, m, e, r, c, question=f"q {i}", png=png if e else None) for i, k, m, e, r, c in FIXTURE]


def test_fixture_numbers_by_hand():
    s = summarize(_samples())
    assert [x.passed for x in _samples()] == [True, False, False, False, True, False]
    o = s["overall"]
    assert o["n"] == 6
    assert o["answer_accuracy"] == pytest.approx(4 / 6) and o["execution_rate"] == pytest.approx(4 / 6)
    assert o["mean_readability"] == pytest.approx(16 / 6) and o["mean_correctness"] == pytest.approx(15.5 / 6)
    assert o["pass_rate"] == pytest.approx(2 / 6)
    ext, tr = s["per_kind"]["extremum"], s["per_kind"]["trend"]
    assert (ext["n"], ext["answer_accuracy"], ext["execution_rate"]) == (3, pytest.approx(2 / 3), 1.0)
    assert ext["mean_readability"] == pytest.approx(12.5 / 3) and ext["mean_correctness"] == pytest.approx(4.0)
    assert ext["pass_rate"] == pytest.approx(1 / 3) and tr["pass_rate"] == pytest.approx(1 / 3)
    assert tr["execution_rate"] == pytest.approx(1 / 3) and tr["mean_readability"] == pytest.approx(3.5 / 3)


def test_against_the_released_pandas_final_score_on_random_samples():
    rng = random.Random(0)
    kinds = ["extremum", "trend", "top_k", "text2vis"]
    samples = [
        SampleScore(
            f"r{i}",
            rng.choice(kinds),
            rng.random() < 0.5,
            rng.random() < 0.7,
            rng.randint(0, 10) / 2,
            rng.randint(0, 10) / 2,
        )
        for i in range(300)
    ]
    df = pd.DataFrame(
        {
            "kind": [s.kind for s in samples],
            "Answer Match": [int(s.answer_match) for s in samples],
            "execution_result": [int(s.executed) for s in samples],
            "Readability and Quality Score": [s.readability for s in samples],
            "Chart Correctness Score": [s.correctness for s in samples],
        }
    )
    df["Final Score"] = np.where(
        (df["Answer Match"] == 1)
        & (df["execution_result"] == 1)
        & (df["Readability and Quality Score"] >= 3.5)
        & (df["Chart Correctness Score"] >= 3.5),
        1,
        0,
    )
    got = summarize(samples)
    assert got["overall"]["pass_rate"] == pytest.approx(df["Final Score"].mean())
    for kind, g in df.groupby("kind"):
        m = got["per_kind"][kind]
        assert m["n"] == len(g) and m["pass_rate"] == pytest.approx(g["Final Score"].mean())
        assert m["answer_accuracy"] == pytest.approx(g["Answer Match"].mean())
        assert m["execution_rate"] == pytest.approx(g["execution_result"].mean())
        assert m["mean_readability"] == pytest.approx(g["Readability and Quality Score"].mean())
        assert m["mean_correctness"] == pytest.approx(g["Chart Correctness Score"].mean())


@pytest.mark.parametrize(
    "field,value",
    [
        ("readability", 3.25),
        ("correctness", 5.5),
        ("readability", -0.5),
        ("correctness", float("nan")),
        ("answer_match", 1),
        ("executed", "yes"),
    ],
)
def test_bad_scores_are_named(field, value):
    kw = dict(id="x", kind="trend", answer_match=True, executed=True, readability=4.0, correctness=4.0)
    kw[field] = value
    with pytest.raises((ValueError, TypeError), match=field):
        SampleScore(**kw)


def test_empty_and_repeated_ids_raise():
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
    with pytest.raises(ValueError, match="repeat"):
        summarize(_samples() + _samples()[:1])


def test_markdown_table_rows():
    md = to_markdown(summarize(_samples()))
    lines = md.strip().splitlines()
    assert lines[0].startswith("| kind | n |") and len(lines) == 2 + 2 + 1
    assert lines[2] == "| extremum | 3 | 66.7 | 100.0 | 4.17 | 4.00 | 33.3 |"
    assert lines[-1] == "| **all** | 6 | 66.7 | 66.7 | 2.67 | 2.58 | 33.3 |"


def test_write_outputs(tmp_path):
    paths = write_outputs(_samples(_png()), tmp_path, extra={"model": "fixture"}, grid_n=6)
    data = json.loads(paths["json"].read_text())
    assert data["model"] == "fixture" and data["overall"]["pass_rate"] == pytest.approx(2 / 6)
    assert [r["passed"] for r in data["samples"]] == [True, False, False, False, True, False]
    assert "png" not in data["samples"][0]
    assert paths["md"].read_text() == to_markdown(summarize(_samples()))
    img = mpimg.imread(paths["png"])
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
