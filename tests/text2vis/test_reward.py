"""The RL-Text2Vis reward against hand-computed cases for every branch (judges and execution stubbed),
then with the real sandbox on adversarial chart code."""

import json
import random

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment  # noqa: F401  (the reference below enumerates instead)

from experiments.text2vis.execute import ChartRun
from experiments.text2vis.judges import JudgeStats, TextVerdict, VisualScores
from experiments.text2vis.reward import (
    RLText2VisReward,
    answer_reward,
    code_reward,
    configure,
    hungarian_score,
    numeric_fallback,
    rl_text2vis,
    rl_text2vis_format,
    step_metrics,
    visual_reward,
)
from experiments.text2vis.tasks import Text2VisTask

TASK = Text2VisTask(
    id="t1",
    question="Which year had the most sales?",
    answer="2020",
    table_csv="year,sales\n2019,10\n2020,15\n",
    kind="extremum",
    gold_code="import pandas as pd\nimport matplotlib.pyplot as plt\nplt.show()",
    split="train",
)
CODE = "import matplotlib.pyplot as plt\nplt.bar([1], [2])\nplt.show()"


def reply(answer="2020", code=CODE):
    return json.dumps({"answer": answer, "code": code})


class FakeText:
    def __init__(self, answer_score, intent, parsed=True):
        self.v, self.stats, self.calls = TextVerdict(answer_score, intent, parsed), JudgeStats(), []

    def judge(self, task, answer, code):
        self.calls.append((answer, code))
        return self.v


class FakeVisual:
    def __init__(self, r, c):
        self.s, self.stats, self.calls = VisualScores(r, c), JudgeStats(), 0

    def score(self, task, run):
        self.calls += 1
        return self.s


def runs(ok):
    def run(code, csv, **kw):
        good = ok and code is not None
        return ChartRun(
            good, "ok" if good else "no_code" if code is None else "error", b"png" if good else None, {}, ""
        )

    return run


def make(answer_score, intent, r, c, ok=True, parsed=True):
    return RLText2VisReward(FakeText(answer_score, intent, parsed), FakeVisual(r, c), executor=runs(ok))


@pytest.mark.parametrize(
    "shape, expected", [(1, 1.0), (0, 0.0), (0.5, 0.3), (0.999, 0.6 * 0.999 + 0.4), (0.9989, 0.6 * 0.9989), (5, 3.4)]
)
def test_answer_reward(shape, expected):
    assert answer_reward(shape) == pytest.approx(expected)


@pytest.mark.parametrize(
    "ex, intent, expected", [(0.5, 0.5, 1.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5), (0, 0, 0.0), (0.5, 1.0, 0.5)]
)  # intent 1 is not 0.5: released equality test
def test_code_reward(ex, intent, expected):
    assert code_reward(ex, intent) == expected


@pytest.mark.parametrize(
    "r, c, expected",
    [(4, 4, 1.0), (5, 4, 1.0), (4, 3, 0.5), (3, 3, 0.5), (3, 2, 0.25), (1, 3, 0.25), (2, 2, 0.0), (0, 0, 0.0)],
)
def test_visual_reward(r, c, expected):
    assert visual_reward(r, c) == expected


def test_full_marks():
    p = make(1, 0.5, 5, 4).score_one(TASK, reply())
    assert (p.format, p.answer, p.code, p.visual, p.main) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_hand_computed_mixture():
    # judge says answer 0 -> fallback 1 - |2020 - 2000| / 2020; executed, intent 0; visual both 3
    p = make(0, 0.0, 3, 3).score_one(TASK, reply(answer="2000"))
    shape = 1 - 20 / 2020
    assert p.numeric_fallback and p.shape == pytest.approx(shape) and p.binary == 0.0
    assert p.main == pytest.approx(0.5 * 0.6 * shape + 0.25 * 0.5 + 0.25 * 0.5)


def test_fallback_close_number_reaches_binary():
    t = Text2VisTask(**{**TASK.__dict__, "answer": "48.77"})
    p = make(0, 0.5, 1, 1).score_one(t, reply(answer="48.73"))
    assert p.shape == pytest.approx(1 - 0.04 / 48.77) and p.binary == 1.0  # 0.99918 >= 0.999
    assert p.main == pytest.approx(0.5 * (0.6 * p.shape + 0.4) + 0.25 * 1.0 + 0.0)


def test_not_executed_skips_visual_judge_and_scores_zero_visual():
    reward = make(1, 0.5, 5, 5, ok=False)
    p = reward.score_one(TASK, reply())
    assert reward.visual_judge.calls == 0 and (p.executable, p.readability, p.visual) == (0.0, 0.0, 0.0)
    assert p.main == pytest.approx(0.5 * 1.0 + 0.25 * 0.5)


def test_unparsed_text_judge_is_zero_and_counted_via_parts():
    p = make(0, 0.0, 4, 4, parsed=False).score_one(TASK, reply(answer="two thousand twenty"))
    assert not p.text_parsed and not p.numeric_fallback and p.answer == 0.0
    assert p.main == pytest.approx(0.25 * 0.5 + 0.25 * 1.0)
    assert step_metrics([p])["text_unparsed_frac"] == 1.0


def test_unclipped_judge_score_as_released():
    assert make(5, 0.5, 4, 4).score_one(TASK, reply()).main == pytest.approx(0.5 * 3.4 + 0.25 + 0.25)


def test_format_and_main_are_independent():
    text = "Sure!\n" + reply()  # extractable (main reward works) but not strict JSON
    p = make(1, 0.5, 4, 4).score_one(TASK, text)
    assert p.format == 0.0 and p.main == 1.0
    assert rl_text2vis_format([""] * 3, [reply(), text, reply(code="plt.bar([1],[2])")]) == [1.0, 0.0, 0.0]


def test_internal_error_scores_zero_and_is_counted():
    class Boom(FakeText):
        def judge(self, task, answer, code):
            raise RuntimeError("judge exploded")

    reward = RLText2VisReward(Boom(1, 0.5), FakeVisual(4, 4), executor=runs(True))
    p = reward.score_one(TASK, reply())
    assert p.main == 0.0 and p.status == "reward_error" and reward.fallback_counts()["reward_errors"] == 1


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        ("2020", "2000", 1 - 20 / 2020),
        ("50%", "40", 1 - 10 / 50),
        ("10", "-10", 0.0),
        ("10", "35", 0.0),
        ("10", "abc", None),
        ("ten", "10", None),
        ("10", None, None),
        ("nan", "1", 0.0),
        ("-1e-15", "1", None),
        ("0", "0", 1.0),
        ("0", "1", 0.0),
    ],
)
def test_numeric_fallback_cases(gold, pred, expected):
    got = numeric_fallback(gold, pred)
    assert got == pytest.approx(expected) if expected is not None else got is None


def _brute_force(a, b):
    """Reference: the best matching by enumerating every injection of the shorter list into the longer."""
    from itertools import permutations

    d = lambda x1, x2: min(1, abs((x1 - x2) / (x1 + 1e-15)))  # noqa: E731
    if len(a) <= len(b):
        best = min(sum(d(x, b[j]) for x, j in zip(a, perm)) for perm in permutations(range(len(b)), len(a)))
    else:
        best = min(sum(d(a[i], y) for y, i in zip(b, perm)) for perm in permutations(range(len(a)), len(b)))
    return 1 - best / max(len(a), len(b))


def test_hungarian_matches_brute_force_on_random_lists():
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice([rng.uniform(-100, 100), float(rng.randint(-5, 5))]) for _ in range(rng.randint(1, 5))]
        b = [
            rng.choice([x * rng.uniform(0.8, 1.2) for x in a] + [rng.uniform(-100, 100)])
            for _ in range(rng.randint(1, 5))
        ]
        assert hungarian_score(a, b) == pytest.approx(_brute_force(a, b), abs=1e-12)


def test_grpo_reward_function_logs_every_part():
    configure(make(1, 0.5, 4, 3))
    try:
        values, info = rl_text2vis(["p"] * 2, [reply(), "garbage"], task=[TASK, TASK])
    finally:
        configure(RLText2VisReward())
    # the fake judge says answer 1 / intent 0.5 for both; "garbage" has no code, so it never executes
    assert values == [pytest.approx(0.5 + 0.25 + 0.125), pytest.approx(0.5 + 0.125 + 0.0)]
    for key in (
        "format",
        "answer",
        "shape",
        "binary",
        "code",
        "executable",
        "code_intent",
        "visual",
        "readability",
        "correctness",
        "main",
        "numeric_fallback_frac",
        "status_ok",
        "code_format_none",
    ):
        assert key in info, key
    assert info["format"] == 0.5 and info["code_format_json_object"] == 0.5  # the default json parser
    with pytest.raises(ValueError, match="task"):
        rl_text2vis(["p"], ["x"])


ADVERSARIAL = {
    "infinite_loop": "while True:\n    pass\n",
    "no_figure": "x = 1\nplt.show()\n",
    "writes_elsewhere": "import matplotlib.pyplot as plt\nplt.plot([1],[2])\nplt.savefig('/etc/x.png')\n",
    "ten_thousand_subplots": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(100, 100)\nplt.show()\n",
    "exit": "import os\nos._exit(0)\n",
}


def test_adversarial_chart_code_scores_zero_and_never_raises():
    """Real sandbox, programmatic judges, a wrong non-numeric answer (no fallback): every adversarial sample's main reward is 0."""
    reward = RLText2VisReward(timeout_s=4, memory_mb=512, max_workers=2)
    configure(reward)
    try:
        values, info = rl_text2vis(
            [""] * len(ADVERSARIAL), [reply("no idea", c) for c in ADVERSARIAL.values()], task=[TASK] * len(ADVERSARIAL)
        )
    finally:
        configure(RLText2VisReward())
    assert values == [0.0] * len(ADVERSARIAL), dict(zip(ADVERSARIAL, [p.status for p in reward.last_parts]))
    assert info["executable"] == 0.0 and np.isfinite(info["main"])


def test_a_gold_list_answer_scores_under_json_and_is_cut_under_released():
    """A correct top-k reply (its JSON-list answer has escaped quotes inside the answer string):
    the json parser hands the judge the whole list, the released regex hands it ``[\\``."""
    from experiments.text2vis.judges import ProgrammaticTextJudge

    gold = json.dumps(["Ford Pinto", "AMC Gremlin", "Chevy Vega"])
    task = Text2VisTask(
        id="k1",
        question="List the 3 cars with the lowest mpg.",
        answer=gold,
        table_csv="name,mpg\nFord Pinto,1\nAMC Gremlin,2\nChevy Vega,3\nBMW,9\n",
        kind="top_k",
        gold_code=CODE,
        split="heldout",
    )
    text = reply(answer=gold)
    assert '\\"Ford Pinto\\"' in text
    scored = {}
    for parser in ("json", "released"):
        judge = FakeVisual(4, 4)
        reward = RLText2VisReward(ProgrammaticTextJudge(), judge, executor=runs(True), parser=parser)
        scored[parser] = reward.score_one(task, text)
    assert scored["json"].binary == 1.0 and scored["json"].answer == 1.0
    assert scored["released"].binary == 0.0 and scored["released"].answer == 0.0
    assert scored["json"].format == scored["released"].format == 1.0
    assert scored["json"].main == pytest.approx(scored["released"].main + 0.5)
    with pytest.raises(ValueError, match="parser"):
        RLText2VisReward(parser="regex")
