"""The Text2Vis CSV/JSONL loader on a hand-made fixture in the published column layout (real rows when present)."""

import csv
import io
import json
from pathlib import Path

import pytest

from experiments.text2vis.loader import load_text2vis, real_text2vis_files, table_text_to_csv, tasks_from_rows

FIX = Path(__file__).parent / "fixtures"


def _rows() -> list[dict]:
    return [json.loads(line) for line in (FIX / "text2vis_sample.jsonl").read_text().splitlines()]


def _parsed(csv_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_text)))


def test_fixture_csv_loads_every_column():
    tasks = load_text2vis(FIX / "text2vis_sample.csv")
    raw = list(csv.DictReader((FIX / "text2vis_sample.csv").open(newline="")))  # stdlib reader as the reference
    assert [t.id for t in tasks] == [r["ID"] for r in raw] == ["1", "2", "3", "4"]
    for t, r in zip(tasks, raw):
        assert (t.question, t.answer, t.gold_code, t.prompt, t.split) == (
            r["Question"],
            r["Answer"],
            r["Visualization Code"],
            r["Prompt"],
            r["set"],
        )
        assert t.kind == "text2vis"
    # four table layouts, one per row: CSV, Python dict of lists, markdown, JSON list of records
    assert _parsed(tasks[0].table_csv) == [["Country", "Growth"], ["Norway", "2.1"], ["Chile", "3.4"], ["Kenya", "5.6"]]
    assert _parsed(tasks[1].table_csv)[0] == ["Year", "Sales"] and _parsed(tasks[1].table_csv)[3] == ["2020", "90"]
    assert _parsed(tasks[2].table_csv) == [["Category", "Share"], ["Rent", "45"], ["Food", "35"], ["Travel", "20"]]
    assert _parsed(tasks[3].table_csv)[-1] == ["4", "8"]


def test_jsonl_equals_csv_and_split_filter():
    assert load_text2vis(FIX / "text2vis_sample.jsonl") == load_text2vis(FIX / "text2vis_sample.csv")
    assert [t.id for t in load_text2vis(FIX / "text2vis_sample.csv", splits=["test2"])] == ["3", "4"]
    with pytest.raises(ValueError, match="splits"):
        load_text2vis(FIX / "text2vis_sample.csv", splits=["train"])


def test_integer_ids_and_extra_prediction_columns_are_accepted():
    rows = [{**r, "ID": int(r["ID"]), "Generated Answer": "x", "Generated Code": "y"} for r in _rows()]
    assert [t.id for t in tasks_from_rows(rows)] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    "column,value",
    [
        ("Answer", ""),
        ("Question", "  "),
        ("set", "test3"),
        ("Table Data", "just words"),
        ("Table Data", "{'a': [1, 2], 'b': [3]}"),
        ("Visualization Code", None),
    ],
)
def test_bad_cell_names_its_column(column, value):
    rows = _rows()
    rows[2][column] = value
    with pytest.raises(ValueError, match=f"row 2 \\(ID '3'\\): column '{column}'"):
        tasks_from_rows(rows)


def test_missing_column_and_repeated_id_are_named():
    rows = _rows()
    del rows[1]["Table Data"]
    with pytest.raises(ValueError, match="Table Data"):
        tasks_from_rows(rows)
    rows = _rows()
    rows[3]["ID"] = "1"
    with pytest.raises(ValueError, match="column 'ID' repeats row 0"):
        tasks_from_rows(rows)


def test_bad_jsonl_line_and_suffix(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(_rows()[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2"):
        load_text2vis(p)
    with pytest.raises(ValueError, match="path"):
        load_text2vis(tmp_path / "x.xlsx")


def test_table_text_to_csv_matches_stdlib_on_random_tables():
    import random

    rng = random.Random(3)
    for _ in range(20):
        ncol, nrow = rng.randint(1, 4), rng.randint(1, 6)
        header = [f"c{j}" for j in range(ncol)]
        body = [[str(rng.randint(-50, 50)) for _ in range(ncol)] for _ in range(nrow)]
        as_dict = {h: [int(r[j]) for r in body] for j, h in enumerate(header)}
        md = "\n".join(
            ["| " + " | ".join(header) + " |", "|" + "---|" * ncol] + ["| " + " | ".join(r) + " |" for r in body]
        )
        for text in (json.dumps(as_dict), repr(as_dict), md):
            assert _parsed(table_text_to_csv(text)) == [header] + body


@pytest.mark.skipif(not real_text2vis_files(), reason="no Text2Vis rows in ../shared/data (see its README)")
def test_real_rows_load():
    for path in real_text2vis_files():
        tasks = load_text2vis(path)
        assert tasks and {t.split for t in tasks} <= {"test1", "test2"}
        assert all(len(_parsed(t.table_csv)) >= 2 and t.gold_code.strip() and t.question.strip() for t in tasks)
