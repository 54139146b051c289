"""jaxlab.runs: one output_dir holds one run's results; appending logs; runs where nothing worked fail."""

import dataclasses
import json
import textwrap

import pytest

from jaxlab.cli import main
from jaxlab.runs import (
    RUN_FILE,
    JsonlLog,
    RunDirError,
    RunFailedError,
    claim_output_dir,
    fail_if_no_call_succeeded,
    fingerprint,
)


@dataclasses.dataclass(frozen=True)
class Ckpt:
    every_steps: int = 2
    resume: bool = True


@dataclasses.dataclass(frozen=True)
class Cfg:
    output_dir: str
    overwrite: bool = False
    lr: float = 0.1
    steps: int = 4
    progress: bool = True
    widths: tuple[int, ...] = (1, 2)
    checkpoint: Ckpt = Ckpt()


OUTPUTS = ("metrics.jsonl", "checkpoints")


def _claim(cfg, **kw):
    return claim_output_dir(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=("steps", "progress"), **kw)


def _results(out, step=6):
    (out / "checkpoints" / str(step)).mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')


def test_fresh_dir_records_config_and_fingerprint(tmp_path):
    cfg = Cfg(str(tmp_path / "run"))
    assert _claim(cfg) is False
    record = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert record["config"]["lr"] == 0.1 and record["config"]["widths"] == [1, 2]
    assert record["fingerprint"] == fingerprint(record["config"], ("steps", "progress", "checkpoint.resume"))
    # keys that do not change results stay out of the fingerprint; the rest are in it
    same = dataclasses.replace(cfg, output_dir="elsewhere", overwrite=True, steps=9, progress=False)
    assert fingerprint(json.loads(json.dumps(dataclasses.asdict(same))), ("steps", "progress")) == fingerprint(
        json.loads(json.dumps(dataclasses.asdict(cfg))), ("steps", "progress")
    )
    assert fingerprint(dataclasses.asdict(dataclasses.replace(cfg, lr=0.2))) != fingerprint(dataclasses.asdict(cfg))


def test_same_config_resumes_and_ignored_keys_may_change(tmp_path):
    out = tmp_path / "run"
    _claim(Cfg(str(out)))
    _results(out)
    assert _claim(Cfg(str(out), steps=8, progress=False)) is True  # train longer: resume
    assert (out / "checkpoints" / "6").is_dir() and (out / "metrics.jsonl").exists()
    assert json.loads((out / RUN_FILE).read_text())["config"]["steps"] == 8


def test_another_runs_results_are_refused_naming_the_changed_keys(tmp_path):
    out = tmp_path / "run"
    _claim(Cfg(str(out)))
    _results(out)
    before = (out / "metrics.jsonl").read_text()
    bad = Cfg(str(out), lr=0.2, widths=(1, 3), checkpoint=Ckpt(every_steps=5))
    with pytest.raises(
        RunDirError,
        match=r"holds results \(metrics.jsonl, checkpoints\) of a run with a different "
        r"config .*changed keys: checkpoint.every_steps: 2 -> 5; lr: 0.1 -> 0.2; "
        r"widths: \[1, 2\] -> \[1, 3\]; set overwrite=true",
    ):
        _claim(bad)
    with pytest.raises(RunDirError, match=r"same config and checkpoint.resume is false; set checkpoint.resume=true"):
        _claim(Cfg(str(out), checkpoint=Ckpt(resume=False)))
    assert (out / "metrics.jsonl").read_text() == before and (out / "checkpoints" / "6").is_dir()
    assert json.loads((out / RUN_FILE).read_text())["config"]["lr"] == 0.1


def test_results_without_run_json_are_refused(tmp_path):
    _results(tmp_path)
    with pytest.raises(RunDirError, match=r"holds results .* without a readable run.json"):
        _claim(Cfg(str(tmp_path)))


def test_overwrite_deletes_the_old_results_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    _claim(Cfg(str(out)))
    _results(out, step=6)
    (out / "notes.txt").write_text("mine")
    assert _claim(Cfg(str(out), lr=0.2, overwrite=True, checkpoint=Ckpt(resume=False))) is False
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()  # no stale step 6
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / RUN_FILE).read_text())["config"]["lr"] == 0.2


def test_jsonl_log_appends_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "torn')  # a killed writer
    log = JsonlLog(path)
    assert log.existing == [{"id": 1}]
    log.write({"id": 3})
    log.close()
    assert [r["id"] for r in JsonlLog(path).existing] == [1, 3]


def test_no_successful_call_is_a_failure_with_a_summary():
    ok = [{"calls": 0, "error": "APIConnectionError: refused"}, {"calls": 2, "error": ""}]
    fail_if_no_call_succeeded(ok, lambda r: r["error"].split(":")[0], lambda r: r["error"], "t.jsonl")
    fail_if_no_call_succeeded([], lambda r: "", lambda r: "", "t.jsonl")
    dead = [{"calls": 0, "error": "APIConnectionError: refused"}] * 3 + [{"calls": 0, "error": "LLMError: 500"}]
    with pytest.raises(
        RunFailedError,
        match=r"every model call failed: 4 of 4 items .*\(APIConnectionError: 3, "
        r"LLMError: 1\); first error: 'APIConnectionError: refused'.*t.jsonl",
    ):
        fail_if_no_call_succeeded(dead, lambda r: r["error"].split(":")[0], lambda r: r["error"], "t.jsonl")


RUNNER = """
import dataclasses
from pathlib import Path
from jaxlab.runs import RunFailedError, claim_output_dir

@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str
    overwrite: bool = False
    lr: float = 0.1
    fail: bool = False

def run(cfg):
    claim_output_dir(cfg, ("results.json",), ignore=("fail",))
    if cfg.fail:
        raise RunFailedError("every model call failed: 2 of 2 items (APIConnectionError: 2)")
    (Path(cfg.output_dir) / "results.json").write_text("{}")
"""


def test_jaxlab_run_exit_codes(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_runner.py").write_text(textwrap.dedent(RUNNER))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"runner: fake_runner\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["run", str(cfg)]) == 0
    assert main(["run", str(cfg), "lr=0.5"]) == 2
    assert "changed keys: lr: 0.1 -> 0.5" in capsys.readouterr().err
    assert main(["run", str(cfg), "lr=0.5", "overwrite=true"]) == 0
    assert main(["run", str(cfg), "lr=0.5", "fail=true"]) == 1
    assert "run failed: every model call failed" in capsys.readouterr().err
