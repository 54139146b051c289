"""Answer checking as the MAS-ProVe authors' AIME evaluation does it, on hand cases and real shared rows."""

import json

import pytest

from experiments.grpo.evaluate import shared_data_dir
from experiments.mas_prove import benchmarks
from experiments.mas_prove.benchmarks import grade, load_tasks, real_math_tasks
from experiments.masbench.scorer import final_answer, math_correct, score

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data is absent")


@pytest.mark.parametrize(
    "response,gold,ok",
    [
        (r"so \boxed{\frac12}", "1/2", True),
        (r"\boxed{\frac12}", r"\frac{1}{2}", True),
        (r"\boxed{\dfrac{14}{3}}", r"\frac{14}{3}", True),
        (r"\boxed{x=5}", "5", True),
        ("x=5", "5", True),
        (r"first \boxed{3}, no wait: \boxed{5}", "5", True),  # several boxes: the last one counts
        (r"first \boxed{5}, no wait: \boxed{3}", "5", False),
        ("The answer is 42.", "42", True),  # zero boxes
        (r"<answer>33</answer> though \boxed{2} also", "33", True),  # the authors' tag comes first
        (r"\boxed{1,000}", "1000", True),
        (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", True),
        ("I do not know", "3", False),
        (r"\boxed{13}", "12", False),
    ],
)
def test_single_answer_checking(response, gold, ok):
    assert math_correct(response, gold) is ok


def test_final_answer_extraction_order():
    assert final_answer(r"<answer> 7 </answer> \boxed{8}") == "7"
    assert final_answer(r"\boxed{1} then \boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert final_answer("so the answer is 12.") == "12" and final_answer("sum 3 and 4 gives 7") == "7"
    assert final_answer("no numbers") is None


def test_multi_answer_tasks_still_need_every_box_in_order():
    assert score(r"\boxed{\frac12} \boxed{x=5}", ["0.5", "5"])["correct"]
    assert not score(r"\boxed{5}", ["0.5", "5"])["correct"]


@needs_data
def test_real_math500_solutions_grade_correct_and_shifted_answers_do_not():
    rows = [json.loads(x) for x in (DATA / "math500" / "test.jsonl").read_text().splitlines()][:80]
    assert all(math_correct(r["solution"], r["answer"]) for r in rows)
    shifted = sum(math_correct(rows[i]["solution"], rows[i - 1]["answer"]) for i in range(len(rows)))
    assert shifted <= 2  # a neighbour's answer is (almost) never equivalent


@needs_data
def test_real_gsm8k_and_aime_rows_through_the_loader():
    g = real_math_tasks("gsm8k", 20)
    rows = [json.loads(x) for x in (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()][:20]
    assert all(grade(t, r["answer"]) for t, r in zip(g, rows))  # worked solution ending in '#### n'
    a24 = real_math_tasks("aime24", 15)
    sols = [json.loads(x)["solution"] for x in (DATA / "aime" / "aime24.jsonl").read_text().splitlines()]
    assert len(a24) == 15 and all(grade(t, s) for t, s in zip(a24, sols))
    a25 = real_math_tasks("aime25", 3)
    assert [t.id.split("-")[0] for t in a25] == ["aime25"] * 3 and all(t.answers[0].isdigit() for t in a25)
    assert grade(a25[0], f"... \\boxed{{{a25[0].answers[0]}}}") and not grade(a25[0], "\\boxed{1000}")


def test_fresh_clone_falls_back_visibly(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(benchmarks, "shared_data_dir", lambda: None)
    tasks = load_tasks("math", 3, 0)
    assert all(t.id.startswith("synthetic-") for t in tasks) and "synthetic" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="aime/aime24.jsonl"):
        load_tasks("aime24", 3, 0)
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match="expected keys"):
        load_tasks("math", 1, 0, str(bad))
