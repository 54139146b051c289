"""Every shipped config validates against its runner's Config (so a stale key fails here, not at run time)."""
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
