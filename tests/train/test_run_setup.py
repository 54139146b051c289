"""jaxlab.train.run_setup in one process (8 fake devices): start-up, mesh, data shards, the one writer.

The multi-process behaviour of the same functions is exercised by the
two-process tests (test_multihost*.py, test_multiprocess_refusals.py).
"""

import dataclasses
import json

import pytest
import yaml

from jaxlab.config import ConfigError
from jaxlab.distributed import DistributedConfig
from jaxlab.runs import RunDirError
from jaxlab.sharding import MeshConfig
from jaxlab.train.run_setup import build_mesh, data_shards, primary_metrics, refuse_multiprocess, say, start_run


@dataclasses.dataclass(frozen=True)
class _Cfg:
    output_dir: str
    overwrite: bool = False
    lr: float = 0.1
    distributed: DistributedConfig | None = None


def test_start_run_claims_the_directory_and_refuses_another_config(tmp_path):
    out = start_run(_Cfg(str(tmp_path / "run")), ("metrics.jsonl",))
    assert out == (tmp_path / "run").absolute()
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 0.1
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 0.1
    (out / "metrics.jsonl").write_text("{}\n")  # results of that run
    with pytest.raises(RunDirError, match="lr: 0.1 -> 0.2"):
        start_run(_Cfg(str(tmp_path / "run"), lr=0.2), ("metrics.jsonl",))
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 0.1  # nothing rewritten


def test_refuse_multiprocess_lets_one_process_through():
    refuse_multiprocess(_Cfg("x"), "GRPO", "why")  # one process: no error (two are refused: see the two-process test)


def test_build_mesh_spans_the_devices_and_names_mesh_on_a_bad_shape():
    assert build_mesh(None) is None
    assert dict(build_mesh(MeshConfig(data=2, fsdp=4)).shape) == {"data": 2, "fsdp": 4, "tensor": 1, "expert": 1}
    with pytest.raises(ConfigError, match=r"mesh: shape .* needs 16 devices.*1 process\(es\), 8 devices in all"):
        build_mesh(MeshConfig(data=16))


@pytest.mark.parametrize("shards,batch,want", [(None, 8, ([0], 1)), (4, 8, ([0, 1, 2, 3], 4))])
def test_data_shards_of_the_only_process(shards, batch, want):
    assert data_shards(shards, batch) == want


def test_data_shards_errors_name_the_keys():
    with pytest.raises(ConfigError, match=r"data.batch_size=6 is not divisible by the 4 data shards"):
        data_shards(4, 6)
    with pytest.raises(ConfigError, match="data.shards: expected a positive multiple"):
        data_shards(0, 8)


def test_primary_metrics_and_say_on_process_zero(tmp_path, capsys):
    writer = primary_metrics(tmp_path, None)
    assert writer is not None
    writer.write(1, "train", {"loss": 2.5})
    writer.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "split": "train", "loss": 2.5}
    say("sft", "hello")
    assert capsys.readouterr().out == "[sft] hello\n"
