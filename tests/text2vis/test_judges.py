"""The judges: released prompts and parsing through jaxlab's scripted client (the PNG really sent as an
image part), counted fallbacks, the programmatic answer match and chart judge."""

import base64
import json
import random

import pytest

from experiments.text2vis.execute import ChartRun
from experiments.text2vis.judges import (
    LLMTextJudge,
    LLMVisualJudge,
    ProgrammaticChartJudge,
    ProgrammaticTextJudge,
    VisualScores,
    answer_match,
    code_intent,
    parse_text_verdict,
    parse_visual_scores,
    value_f1,
)
from experiments.text2vis.tasks import Text2VisTask
from jaxlab.llm import LLMError, ScriptedClient

GOLD = (
    "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('table.csv')\n"
    "plt.bar(df['year'].astype(str), df['sales'])\nplt.title('Sales')\nplt.xlabel('year')\n"
    "plt.ylabel('sales')\nplt.show()\n"
)
TASK = Text2VisTask(
    id="j1",
    question="Which year had the most sales?",
    answer="2020",
    table_csv="year,sales\n2019,10\n2020,15\n2021,12\n",
    kind="extremum",
    gold_code=GOLD,
    split="heldout",
)
PNG = b"\x89PNG\r\n\x1a\nfake-bytes"


def structure(**kw):
    s = {
        "n_axes": 1,
        "chart_type": "bar",
        "n_marks": 3,
        "values": [10.0, 15.0, 12.0],
        "title": "Sales",
        "xlabel": "year",
        "ylabel": "sales",
        "legend": [],
        "xticklabels": ["2019", "2020", "2021"],
        "yticklabels": [],
    }
    s.update(kw)
    return s


def ok_run(**kw):
    return ChartRun(True, "ok", PNG, structure(**kw), "")


# --- LLM text judge -------------------------------------------------------------------------------


def test_text_judge_sends_the_released_prompt_and_reads_json():
    client = ScriptedClient(['```json\n{"answer_score": 1, "code_intent_score": 0.5}\n```'])
    judge = LLMTextJudge(client)
    v = judge.judge(TASK, "2020", "plt.show()")
    assert (v.answer_score, v.code_intent_score, v.parsed) == (1, 0.5, True)
    prompt = client.requests[0].messages[0]["content"]
    for piece in (
        "Ground Truth Answer:\n2020",
        "Generated Answer:\n2020",
        "Generated Code:\nplt.show()",
        "Code Intent Match \u2014 Return 0.5",
        '"answer_score": 0 or 1',
    ):
        assert piece in prompt
    assert judge.stats.snapshot() == {"calls": 1}


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"answer_score": "1", "code_intent_score": "0.5"}', (1, 0.5, True)),
        ('{"answer_score": 1.0, "code_intent_score": 0.5}', (0, 0.5, True)),  # int("1.0") fails: 0, as released
        ('  {"answer_score": 1}', (1, 0.0, True)),  # leading space: json.loads tolerates it
        ('{"answer_score": 1, "code_intent_score": "high"}', (0, 0.0, False)),  # float() fails: both 0
        ('Sure: {"answer_score": 1, "code_intent_score": 0.5}', (0, 0.0, False)),  # prose first: not parsed
        ("[1, 0.5]", (0, 0.0, False)),
        ("", (0, 0.0, False)),
    ],
)
def test_text_verdict_parsing_as_released(reply, expected):
    v = parse_text_verdict(reply)
    assert (v.answer_score, v.code_intent_score, v.parsed) == expected


def test_text_judge_fallbacks_are_counted_never_silent():
    client = ScriptedClient(["not json", LLMError("endpoint down"), '{"answer_score": 1, "code_intent_score": 0}'])
    judge = LLMTextJudge(client)
    verdicts = [judge.judge(TASK, "2020", None) for _ in range(3)]
    assert [v.parsed for v in verdicts] == [False, False, True]
    assert judge.stats.snapshot() == {"calls": 3, "fallbacks": 2, "call_errors": 1}


# --- LLM visual judge -----------------------------------------------------------------------------


def test_visual_judge_sends_the_png_as_an_openai_image_part():
    client = ScriptedClient(['{"readability_score": 4, "visual_correctness_score": 5}'])
    judge = LLMVisualJudge(client)
    s = judge.score(TASK, ok_run())
    assert (s.readability, s.correctness) == (4.0, 5.0)
    content = client.requests[0].messages[0]["content"]
    assert isinstance(content, list) and content[0]["type"] == "image_url"
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == PNG
    assert content[1]["type"] == "text" and 'Query: "Which year had the most sales?"' in content[1]["text"]
    assert "Data Table: year,sales" in content[1]["text"]
    assert client.requests[0].to_openai()["messages"][0]["content"][0]["image_url"]["url"] == url
    assert client.usage.prompt_tokens == len(content[1]["text"].split())  # scripted usage counts text parts only


def test_visual_judge_skips_runs_without_a_chart():
    client = ScriptedClient([])
    s = LLMVisualJudge(client).score(TASK, ChartRun(False, "error", None, None, "boom"))
    assert (s.readability, s.correctness) == (0.0, 0.0) and client.requests == []


@pytest.mark.parametrize(
    "reply, expected, missing",
    [
        ('{"readability_score": 4, "visual_correctness_score": 3}', (4.0, 3.0), []),
        ('{"readability_score": 4.5, "visual_correctness_score": 3}', (4.0, 3.0), []),  # \d+ reads the integer part
        ('{"readability_score": "4", "visual_correctness_score": 3}', (0.0, 3.0), ["readability"]),
        ('{"readability_score":\n 4, "visual_correctness_score": 2}', (0.0, 2.0), ["readability"]),  # repr: \\n
        ("I like it", (0.0, 0.0), ["readability", "correctness"]),
    ],
)
def test_visual_scores_parsing_as_released(reply, expected, missing):
    s, miss = parse_visual_scores(reply)
    assert (s.readability, s.correctness) == expected and miss == missing


def test_visual_judge_fallbacks_are_counted():
    judge = LLMVisualJudge(ScriptedClient(["no scores", '{"visual_correctness_score": 4}']))
    judge.score(TASK, ok_run())
    judge.score(TASK, ok_run())
    assert judge.stats.snapshot() == {"calls": 2, "fallbacks": 2, "fallback_readability": 2, "fallback_correctness": 1}


# --- programmatic answer match and code intent ----------------------------------------------------


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("2020", "2020", True),
        ("The year 2020", "2020", True),
        ("48.73", "48.77", True),
        ("48.0", "48.77", False),
        ("25%", "0.25", True),
        ("1,234.5", "1234.5", True),
        ("north", "North", True),
        ("the North region", "north", True),
        ("south", "north", False),
        (None, "2020", False),
        ("", "2020", False),
        ('["a", "b"]', '["b", "a"]', True),
        ("a, b", '["a", "b"]', True),
        ("a and b", '["a", "b"]', True),
        ("a", '["a", "b"]', False),
        ("a, a", '["a", "b"]', False),
        ("1.5, 2", '["2", "1.5"]', True),
    ],
)
def test_answer_match_cases(pred, gold, expected):
    assert answer_match(pred, gold) is expected


def test_answer_match_numbers_against_reference_on_random_values():
    rng = random.Random(0)
    for _ in range(300):
        g = round(rng.uniform(-1000, 1000), 2)
        p = g * (1 + rng.uniform(-0.03, 0.03))
        expected = abs(p - g) <= 0.01 * abs(g) or abs(p * 100 - g) <= 0.01 * abs(g) or abs(p / 100 - g) <= 0.01 * abs(g)
        assert answer_match(f"{p:.6f}", str(g)) is expected


def test_code_intent():
    assert code_intent(GOLD, TASK) == 0.5
    assert code_intent("import matplotlib.pyplot as plt\nplt.bar([1], [2])\nplt.show()", TASK) == 0.0  # no data
    assert code_intent("import pandas as pd\ndf = pd.read_csv('table.csv')\nprint(df['sales'])", TASK) == 0.0
    assert code_intent(None, TASK) == 0.0
    v = ProgrammaticTextJudge().judge(TASK, "2020", GOLD)
    assert (v.answer_score, v.code_intent_score, v.parsed) == (1, 0.5, True)


# --- programmatic chart judge ---------------------------------------------------------------------


def value_f1_reference(a, b):
    def frac(xs, ys):
        ys = list(ys)
        hits = 0
        for x in xs:
            for j, y in enumerate(ys):
                if abs(x - y) <= max(0.01 * abs(y), 1e-6):
                    hits += 1
                    del ys[j]
                    break
        return hits / len(xs)

    p, r = frac(a, b), frac(b, a)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_value_f1_against_reference():
    rng = random.Random(1)
    for _ in range(200):
        gold = [float(rng.randint(0, 20)) for _ in range(rng.randint(1, 8))]
        plotted = [rng.choice(gold + [99.0]) for _ in range(rng.randint(1, 8))]
        assert value_f1(plotted, gold) == pytest.approx(value_f1_reference(plotted, gold))
    assert value_f1([], [1.0]) == 0.0


class GoldJudge(ProgrammaticChartJudge):
    """The chart judge with the gold structure given (no sandbox run)."""

    def __init__(self, gold):
        super().__init__(executor=lambda code, csv, **kw: ChartRun(True, "ok", PNG, gold, ""))


def test_chart_judge_full_marks_and_each_point_lost():
    judge = GoldJudge(structure())
    assert judge.score(TASK, ok_run()) == VisualScores(5.0, 5.0)
    s = judge.score(TASK, ok_run(title=""))
    assert (s.readability, s.correctness) == (4.0, 5.0)
    s = judge.score(TASK, ok_run(xlabel="", ylabel="", title=""))  # no column name left in the labels
    assert (s.readability, s.correctness) == (3.0, 4.0)
    s = judge.score(TASK, ok_run(values=[1.0, 2.0, 3.0]))  # wrong values
    assert s.correctness == 3.0
    s = judge.score(TASK, ok_run(values=[10.0, 99.0, 98.0]))  # F1 = 1/3
    assert s.correctness == 4.0
    s = judge.score(TASK, ok_run(chart_type="scatter"))  # fits 'extremum' too
    assert s.correctness == 5.0
    t = Text2VisTask(**{**TASK.__dict__, "kind": "top_k"})
    assert judge.score(t, ok_run(chart_type="pie", values=[10 / 37, 15 / 37, 12 / 37])).correctness == 4.0
    assert judge.score(TASK, ok_run(n_axes=20)).readability == 2.0


def test_chart_judge_no_chart_or_empty():
    judge = GoldJudge(structure())
    s = judge.score(TASK, ChartRun(False, "timeout", None, None, ""))
    assert (s.readability, s.correctness) == (0.0, 0.0)
    s = judge.score(TASK, ok_run(n_marks=0, values=[]))
    assert (s.readability, s.correctness) == (1.0, 1.0)


def test_chart_judge_executes_the_gold_once_per_task():
    calls = []

    def executor(code, csv, **kw):
        calls.append(code)
        return ChartRun(True, "ok", PNG, structure(), "")

    judge = ProgrammaticChartJudge(executor=executor)
    for _ in range(3):
        judge.score(TASK, ok_run())
    assert calls == [GOLD] and judge.stats.snapshot()["gold_runs"] == 1


def test_chart_judge_on_a_real_sandboxed_gold():
    from experiments.text2vis.execute import execute_chart

    judge = ProgrammaticChartJudge()
    run = execute_chart(GOLD.replace("plt.title('Sales')\n", ""), TASK.table_csv)
    s = judge.score(TASK, run)
    assert (s.readability, s.correctness) == (4.0, 5.0)
    assert json.dumps(judge.gold_structure(TASK))  # JSON-ready
