"""End to end: config file -> run -> JSONL + results.json + PNG, with a scripted model."""

import json
from pathlib import Path

import pytest

from experiments.mas_orchestra import runner
from experiments.masbench.generator import generate_split
from jaxlab.config import ConfigError, load
from jaxlab.llm import ScriptedClient

from orchestra_helpers import GOOD_SYSTEM, is_orchestrator, oracle_text, system_of

ROOT = Path(__file__).resolve().parents[2]


def test_config_file_loads_and_rejects_typos(tmp_path):
    cfg = load(runner.Config, ROOT / "configs" / "mas_orchestra.yaml")
    assert cfg.runner == "experiments.mas_orchestra.runner" and cfg.output_dir
    with pytest.raises(ConfigError, match="levls"):
        load(runner.Config, ROOT / "configs" / "mas_orchestra.yaml", ["levls=[2]"])
    with pytest.raises(ConfigError, match="levels"):
        load(runner.Config, None, [], data={"levels": [1]})


def test_end_to_end_writes_table_and_scores_failures(tmp_path, capsys):
    cfg = load(
        runner.Config,
        None,
        [f"output_dir={tmp_path}", "axes=[depth,parallel]", "levels=[2,3]", "per_level=1", "max_parallel=2"],
    )
    problems = generate_split(cfg.axes, cfg.levels, cfg.per_level, cfg.seed)

    def responder(req):
        if is_orchestrator(req):
            task = req.messages[-1]["content"]
            design = GOOD_SYSTEM.format(extra="")
            # multi-question (parallel) tasks get a design whose edge block is missing: a scored failure
            return design.split("<edge>")[0] if "Questions:" in task else design
        if "strict reviewer" in system_of(req):
            return "Looks right. correct: True"
        return oracle_text(problems, "\n".join(m["content"] for m in req.messages))

    summary = runner.run(cfg, client=ScriptedClient(responder=responder))
    assert summary["n_problems"] == 4 and summary["execution_rate"] == 0.5
    assert summary["accuracy"]["depth"] == {"2": 1.0, "3": 1.0, "all": 1.0}
    assert summary["accuracy"]["parallel"]["all"] == 0.0 and summary["failures"] == {"edge_mismatch": 2}
    assert summary["mean_reward"] == pytest.approx(0.5) and summary["tokens_total"] > 0
    assert (tmp_path / "accuracy_by_level.png").stat().st_size > 0
    rows = [json.loads(line) for line in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and sum(r["system"] is not None for r in rows) == 4
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["accuracy"] == summary["accuracy"]
    assert "MAS-Orchestra on MASBench" in capsys.readouterr().out


def test_rerun_appends_retries_failed_calls_and_a_dead_model_fails_the_run(tmp_path):
    from jaxlab.llm.types import LLMError
    from jaxlab.runs import RunFailedError

    cfg = load(runner.Config, None, [f"output_dir={tmp_path}", "axes=[depth]", "levels=[2,3]", "per_level=1"])
    problems = generate_split(cfg.axes, cfg.levels, cfg.per_level, cfg.seed)
    dead = {"on": True}
    calls = []

    def responder(req):
        calls.append(req)
        if dead["on"]:
            raise LLMError("HTTP 503 from the endpoint")
        if is_orchestrator(req):
            return GOOD_SYSTEM.format(extra="")
        if "strict reviewer" in system_of(req):
            return "Looks right. correct: True"
        return oracle_text(problems, "\n".join(m["content"] for m in req.messages))

    client = ScriptedClient(responder=responder)
    with pytest.raises(
        RunFailedError,
        match=r"every model call failed: 2 of 2 items .*\(orchestrator_call: 2\); "
        r"first error: '.*HTTP 503",
    ):
        runner.run(cfg, client=client)
    traj = tmp_path / "trajectories.jsonl"
    assert len(traj.read_text().splitlines()) == 2 and not (tmp_path / "results.json").exists()

    dead["on"] = False
    summary = runner.run(cfg, client=client)  # both retried, appended after the failed records
    rows = [json.loads(line) for line in traj.read_text().splitlines()]
    assert [r["error_kind"] for r in rows] == ["orchestrator_call"] * 2 + ["", ""]
    assert summary["accuracy"]["depth"]["all"] == 1.0 and summary["reused_records"] == 0
    n = len(calls)
    again = runner.run(cfg, client=client)
    assert len(calls) == n and again["reused_records"] == 2 and again["accuracy"] == summary["accuracy"]
    assert len(traj.read_text().splitlines()) == 4


@pytest.mark.skipif(
    __import__("experiments.grpo.evaluate", fromlist=["x"]).shared_data_dir() is None, reason="../shared/data is absent"
)
def test_real_aime_rows_through_the_orchestra_runner(tmp_path):
    from experiments.mas_prove.benchmarks import real_math_tasks

    cfg = load(
        runner.Config, None, [f"output_dir={tmp_path}", "benchmark=aime24", "n_tasks=2", "subagents.sc_samples=2"]
    )
    tasks = real_math_tasks("aime24", 2)

    def responder(req):
        if is_orchestrator(req):
            return (
                "<agent><agent_id>a</agent_id><agent_name>SCAgent</agent_name><agent_description>d"
                '</agent_description><required_arguments><agent_input>""</agent_input></required_arguments></agent>'
            )
        prompt = req.messages[-1]["content"]
        t = next(t for t in tasks if t.prompt[:80] in prompt)
        return f"<answer>{t.answers[0]}</answer>" if t is tasks[0] else "\\boxed{0}"

    summary = runner.run(cfg, client=ScriptedClient(responder=responder))
    assert summary["accuracy"]["aime24"]["all"] == 0.5 and summary["execution_rate"] == 1.0
