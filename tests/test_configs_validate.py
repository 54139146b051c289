"""Every shipped config validates against its runner's Config (so a stale key fails here, not at run time)."""

import dataclasses
import json
from pathlib import Path

import pytest

from jaxlab.cli import load_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path):
    module, cfg = load_run_config(str(path), [])
    assert cfg.output_dir and hasattr(module, "run")


def test_configs_exist():
    assert {"ptl_smollm2", "pretrain_smollm2", "mas_prove", "mas_orchestra"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_runner_refuses_another_runs_results_before_loading_anything(path, tmp_path, monkeypatch):
    import jaxlab.models
    from jaxlab.config import to_dict
    from jaxlab.runs import RUN_FILE, RunDirError

    module, cfg = load_run_config(str(path), [f"output_dir={tmp_path}"])
    assert "overwrite" in {f.name for f in dataclasses.fields(cfg)} and cfg.overwrite is False

    def loaded(*args, **kwargs):
        raise AssertionError("loaded a model or client before checking output_dir")

    monkeypatch.setattr(jaxlab.models, "load_smollm2", loaded)
    if hasattr(module, "make_client"):
        monkeypatch.setattr(module, "make_client", loaded)
    (tmp_path / RUN_FILE).write_text(json.dumps({"config": {**to_dict(cfg), "from_another_run": 1}}))
    (tmp_path / module.OUTPUTS[-1]).mkdir()
    with pytest.raises(RunDirError, match=r"different config .*changed keys: from_another_run: 1 -> \"<absent>\""):
        module.run(cfg)
