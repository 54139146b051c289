"""Config validation and the ``jaxlab run`` entry point: bad keys fail before any work."""

import dataclasses
import subprocess
import sys
from typing import Literal

import pytest

from jaxlab.cli import load_run_config, main
from jaxlab.config import ConfigError, apply_overrides, from_dict, load


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    schedule: Literal["cosine", "linear"] = "cosine"


@dataclasses.dataclass(frozen=True)
class Cfg:
    output_dir: str
    steps: int = 10
    optim: Optim = Optim()
    widths: tuple[int, ...] = (1, 2)
    note: str | None = None


def test_valid_config_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: out\noptim:\n  lr: 0.1\n")
    cfg = load(Cfg, path, ["steps=3", "optim.schedule=linear", "widths=[4, 5]"])
    assert cfg == Cfg(output_dir="out", steps=3, optim=Optim(lr=0.1, schedule="linear"), widths=(4, 5))


@pytest.mark.parametrize(
    "data,match",
    [
        ({"output_dir": "o", "stpes": 3}, "unknown key 'stpes'"),
        ({"output_dir": "o", "optim": {"lr": 1, "sched": "x"}}, "unknown key 'optim.sched'"),
        ({"output_dir": "o", "steps": "ten"}, "steps: expected an integer"),
        ({"output_dir": "o", "optim": {"schedule": "cos"}}, r"optim.schedule: expected one of \['cosine', 'linear'\]"),
        ({"steps": 3}, "missing required key 'output_dir'"),
        ({"output_dir": "o", "widths": [1, "a"]}, r"widths\[1\]: expected an integer"),
    ],
)
def test_bad_config_names_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Cfg, data)


def test_override_needs_key_value():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["steps"])


def test_cli_rejects_unknown_key_before_work(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("runner: jaxlab.train.pretrain\noutput_dir: x\ntrain:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="train.stepz"):
        load_run_config(str(path), [])
    assert main(["run", str(path)]) == 2
    assert not (tmp_path / "x").exists()


def test_cli_rejects_missing_runner_and_bad_module(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: x\n")
    with pytest.raises(ConfigError, match="missing required key 'runner'"):
        load_run_config(str(path), [])
    with pytest.raises(ConfigError, match="cannot import 'no.such.module'"):
        load_run_config(str(path), ["runner=no.such.module"])


def test_console_script_reports_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("runner: jaxlab.train.pretrain\noutput_dir: x\nmodle: {}\n")
    proc = subprocess.run([sys.executable, "-m", "jaxlab.cli", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown key 'modle'" in proc.stderr


def test_optional_section_keeps_the_precise_message():
    @dataclasses.dataclass(frozen=True)
    class Outer:
        optim: Optim | None = None

    with pytest.raises(ConfigError, match=r"optim.schedule: expected one of"):
        from_dict(Outer, {"optim": {"schedule": "cos"}})
