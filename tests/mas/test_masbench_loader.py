"""The MASBench parquet loader on files written here in the published schema (HF Salesforce/MASBench card:
string columns reward_model_json, extra_info_json, prompt_json, axis, value, data; combine has no value)."""

import json

import pandas as pd
import pytest

from experiments.mas_orchestra.runner import Config, _problems
from experiments.masbench.igsm import generate
from experiments.masbench.loader import PUBLISHED_COLUMNS, load_parquet


def _row(p, index, extra_question=False, value=True):
    prompt = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": ("Templated instruction.\n" if extra_question else "") + p.question},
    ]
    extra = {"index": index, "split": "test", **({"question": p.question} if extra_question else {})}
    row = {
        "reward_model_json": json.dumps({"style": "rule", "ground_truth": p.gold}),
        "extra_info_json": json.dumps(extra),
        "prompt_json": json.dumps(prompt),
        "axis": p.axis,
        "data": f"igsm_{p.axis}",
    }
    if value:
        row["value"] = str(p.level)
    return row


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def test_published_schema_round_trips_questions_gold_axis_and_level(tmp_path):
    probs = [generate(a, lv, s) for a, lv, s in (("depth", 3, 0), ("horizon", 4, 1), ("robustness", 2, 2))]
    f = _write(
        tmp_path / "depth" / "test-00000-of-00001.parquet",
        [_row(p, 10 + i, extra_question=i == 1) for i, p in enumerate(probs)],
    )
    assert all(pd.read_parquet(f)[c].map(type).eq(str).all() for c in (*PUBLISHED_COLUMNS, "value"))
    got = load_parquet(f)
    assert [g.question for g in got] == [p.question for p in probs]
    assert [g.answers for g in got] == [p.answers for p in probs]  # "<<horizon>>" split back into answers
    assert [(g.axis, g.level) for g in got] == [(p.axis, p.level) for p in probs]
    assert [g.id for g in got] == [
        "depth-test-00000-of-00001-10",
        "depth-test-00000-of-00001-11",
        "depth-test-00000-of-00001-12",
    ]
    combine = _write(
        tmp_path / "combine" / "train-00000-of-00001.parquet", [{**_row(probs[1], 0, value=False), "axis": "combine"}]
    )
    both = load_parquet(tmp_path)  # a folder: every config's files
    assert len(both) == 4 and both[0].axis == "combine" and both[0].level == 0
    assert load_parquet(combine)[0].answers == probs[1].answers
    cfg = Config(parquet=str(f), axes=("depth", "robustness"), output_dir=str(tmp_path / "run"))
    assert [p.id for p in _problems(cfg)] == [got[0].id, got[2].id]


@pytest.mark.parametrize(
    "change,match",
    [
        (
            {"reward_model_json": json.dumps({"style": "rule"})},
            "reward_model_json: expected an object with 'ground_truth'",
        ),
        ({"prompt_json": "[{"}, "prompt_json: not valid JSON"),
        ({"prompt_json": json.dumps([{"role": "system", "content": "x"}])}, "prompt_json: no user message"),
        ({"axis": "width"}, "axis: expected one of"),
        ({"value": "15"}, r"value: expected a level in \[2, 12\]"),
        ({"value": "deep"}, "value: expected an integer level"),
    ],
)
def test_bad_published_rows_name_the_field(tmp_path, change, match):
    f = _write(tmp_path / "t.parquet", [{**_row(generate("depth", 2, 0), 0), **change}])
    with pytest.raises(ValueError, match=match):
        load_parquet(f)


def test_partial_schema_flat_files_and_missing_paths(tmp_path):
    row = _row(generate("depth", 2, 0), 0)
    del row["prompt_json"]
    with pytest.raises(ValueError, match=r"lacks columns \['prompt_json'\]"):
        load_parquet(_write(tmp_path / "a.parquet", [row]))
    flat = _write(tmp_path / "b.parquet", [{"question": "q", "answer": "3<<horizon>>4", "level": 5}])
    assert load_parquet(flat, axis="horizon")[0].answers == ("3", "4")
    with pytest.raises(ValueError, match="pass axis="):
        load_parquet(flat)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_parquet(tmp_path / "nope.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet files"):
        load_parquet(tmp_path / "empty")
