"""Text2VisTask: validation naming the field, JSONL round trip, and the prompt shape of the released code."""

import json

import pytest

from experiments.text2vis.tasks import KINDS, Text2VisTask, build_messages, build_prompt, task_from_dict, task_to_dict

CSV = "name,value\na,1\nb,3\n"
CODE = "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\nplt.bar(df.name, df.value)\nplt.show()\n"


def _task(**kw) -> Text2VisTask:
    base = dict(
        id="t0",
        question="Which name has the largest value?",
        answer="b",
        table_csv=CSV,
        kind="extremum",
        gold_code=CODE,
        split="train",
        table_name="toy",
        template="ext_max",
    )
    base.update(kw)
    return Text2VisTask(**base)


def test_round_trip_through_json():
    for kind in KINDS:
        task = _task(kind=kind, answer='["a", "b"]')
        line = json.dumps(task_to_dict(task))
        assert task_from_dict(json.loads(line)) == task


@pytest.mark.parametrize(
    "field,value,msg",
    [("kind", "pie", "kind"), ("split", "dev", "split"), ("answer", " ", "answer"), ("question", 3, "question")],
)
def test_bad_field_is_named(field, value, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        _task(**{field: value})


def test_from_dict_names_unknown_and_missing_keys():
    row = task_to_dict(_task())
    with pytest.raises(ValueError, match="colour"):
        task_from_dict({**row, "colour": "red"})
    row.pop("gold_code")
    with pytest.raises(ValueError, match="gold_code"):
        task_from_dict(row)


def test_answer_value_parses_list_answers_only():
    assert _task(answer='["a", "b"]').answer_value() == ["a", "b"]
    assert _task(answer="[not json").answer_value() == "[not json"
    assert _task(answer="12.5").answer_value() == "12.5"


def test_prompt_asks_for_json_and_plt_show_and_shows_table():
    task = _task()
    prompt = build_prompt(task)
    assert '"answer"' in prompt and '"code"' in prompt and "plt.show()" in prompt
    assert CSV.strip() in prompt and task.question in prompt and "table.csv" in prompt
    msgs = build_messages(task)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert CSV.strip() in msgs[1]["content"] and '"answer"' in msgs[0]["content"]


def test_published_prompt_replaces_the_built_body():
    task = _task(prompt="PUBLISHED PROMPT BODY", kind="text2vis", split="test1")
    prompt = build_prompt(task)
    assert "PUBLISHED PROMPT BODY" in prompt and CSV.strip() not in prompt
    assert '"answer"' in prompt  # the released trainer prepends its JSON instruction to the Prompt column
