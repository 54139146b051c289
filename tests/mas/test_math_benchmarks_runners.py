"""Real AIME 2024/2025, GSM8K and MATH-500 rows from ../shared/data through both MAS runners, graded by the
last box / <answer> tag with math-verify equivalence (never by requiring exactly one box)."""

import json

import pytest

from experiments.grpo.evaluate import shared_data_dir
from experiments.mas_orchestra import runner as orchestra
from experiments.mas_prove import runner as prove
from experiments.mas_prove.benchmarks import REAL_MATH, real_math_tasks
from jaxlab.config import load
from jaxlab.llm import ScriptedClient

from mas_prove_helpers import make_client
from orchestra_helpers import is_orchestrator

DATA = shared_data_dir()


def _needs(*names):
    absent = DATA is None or not all((DATA / REAL_MATH[n]).is_file() for n in names)
    return pytest.mark.skipif(absent, reason=f"../shared/data lacks {[REAL_MATH[n] for n in names]}")


SINGLE_COT = (
    "<agent><agent_id>a</agent_id><agent_name>CoTAgent</agent_name><agent_description>d</agent_description>"
    "<required_arguments><agent_input></agent_input></required_arguments></agent>"
)
STYLES = (
    lambda g: f"First try \\boxed{{WRONG}}; on reflection the result is \\boxed{{{g}}}.",  # two boxes: last
    lambda g: f"Reasoning...\n<answer>{g}</answer>",
    lambda g: f"Putting it together, the final answer is ${g}$.",
)  # no box at all


@_needs("math500", "gsm8k")
@pytest.mark.parametrize("bench", ["math500", "gsm8k"])
def test_orchestra_runner_grades_real_rows_in_every_answer_style(tmp_path, bench):
    n = 6
    tasks = real_math_tasks(bench, n)
    wrong = {tasks[-1].id}  # the last row answers its neighbour's gold: must be graded wrong

    def responder(req):
        if is_orchestrator(req):
            return SINGLE_COT
        prompt = "\n".join(m["content"] for m in req.messages)
        i = next(i for i, t in enumerate(tasks) if t.prompt[:120] in prompt)
        gold = tasks[i - 1 if tasks[i].id in wrong else i].answers[0]
        return STYLES[i % len(STYLES)](gold)

    cfg = load(orchestra.Config, None, [f"output_dir={tmp_path}", f"benchmark={bench}", f"n_tasks={n}"])
    summary = orchestra.run(cfg, client=ScriptedClient(responder=responder))
    rows = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert {r["id"]: r["correct"] for r in rows} == {t.id: t.id not in wrong for t in tasks}
    assert summary["accuracy"][bench]["all"] == pytest.approx((n - 1) / n)


@_needs("aime24", "aime25")
def test_prove_runner_on_real_aime_rows_leading_zero_gold(tmp_path):
    t24 = real_math_tasks("aime24", 15)
    padded = next(t for t in t24 if t.answers[0].startswith("0"))  # e.g. "073": a model writes 73
    idx = t24.index(padded)
    cfg = load(
        prove.Config,
        None,
        [
            f"output_dir={tmp_path}",
            "frameworks=[debate]",
            "benchmarks=[aime24]",
            f"n_tasks={idx + 1}",
            "seeds=[0]",
            "levels=[none]",
        ],
    )
    summary = prove.run(cfg, client=make_client(str(int(padded.answers[0]))))
    recs = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert {r["task"]: r["correct"] for r in recs}[padded.id] is True and summary["n_records"] == idx + 1
    t25 = real_math_tasks("aime25", 2)
    assert [t.id for t in t25] == [
        f"aime25-{json.loads(x)['id']}" for x in (DATA / "aime" / "aime25.jsonl").read_text().splitlines()[:2]
    ]


@pytest.mark.parametrize(
    "forms",
    [
        [r"\frac12", "0.5", "x=1/2", r"\dfrac{1}{2}", "$0.50$"],
        ["073", "73", "n=73"],
        ["1,000", "1000.0", r"\text{1000}"],
    ],
)
def test_equivalent_numbers_share_one_vote_key(forms):
    from experiments.mas_prove.frameworks.common import majority
    from experiments.masbench.scorer import normalize

    assert len({normalize(f) for f in forms}) == 1
    replies = [f"\\boxed{{{f}}}" for f in forms] + ["\\boxed{7}", "\\boxed{7}"]
    assert majority(replies) == replies[0]  # five equivalent forms outvote two 7s
    assert normalize("y=2x+3") == "y=2x+3" and normalize(r"\frac{\pi}{2}") != normalize("2")
