"""jaxlab.distributed: config validation, and the cross-host helpers (one process here, two over gloo below)."""

import textwrap

import pytest

from jaxlab.config import ConfigError
from jaxlab.distributed import DistributedConfig, allgather_json, initialize, raise_everywhere
from tests.train.two_procs import launch


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_processes": 0}, "distributed.num_processes"),
        ({"num_processes": 2, "process_id": 2}, "distributed.process_id"),
        ({"process_id": -1}, "distributed.process_id"),
        ({"initialization_timeout": 0}, "distributed.initialization_timeout"),
        ({"local_device_ids": ()}, "distributed.local_device_ids"),
        ({"local_device_ids": (0, -1)}, "distributed.local_device_ids"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistributedConfig(**kwargs)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="distributed.num_processes: the environment's JAX_NUM_PROCESSES='two'"):
        initialize(DistributedConfig())  # fails before jax.distributed is reached


AUTO = textwrap.dedent("""
    import os, sys
    import jax
    from jaxlab.config import ConfigError
    from jaxlab.distributed import DistributedConfig, initialize
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        os.environ.pop(k, None)
    try:
        initialize(DistributedConfig())  # `distributed: {}` on a machine that is no cluster
    except ConfigError as e:
        print("NO CLUSTER", e, flush=True)
    os.environ.update(JAX_COORDINATOR_ADDRESS=f"localhost:{sys.argv[1]}", JAX_NUM_PROCESSES="1", JAX_PROCESS_ID="0")
    initialize(DistributedConfig())  # now the environment says: a group of one
    print("JOINED", jax.distributed.is_initialized(), jax.process_count(), flush=True)
""")


def test_auto_detect_failure_names_the_keys_and_the_environment_fills_them(tmp_path):
    [(_, log)] = launch(lambda i, port: ["-c", AUTO, str(port)], n=1, devices=1, timeout=120)
    assert "NO CLUSTER distributed: coordinator_address should be defined." in log, log[-2000:]
    assert "set distributed.coordinator_address, distributed.num_processes and distributed.process_id" in log
    assert "JOINED True 1" in log


def test_single_process_helpers():
    initialize(None)  # no distributed section: stays one process, touches nothing
    assert allgather_json({"pos": (1, 2)}) == [{"pos": [1, 2]}]  # JSON-normalised like the multi-host path
    raise_everywhere(None)
    err = ValueError("output_dir exists")
    with pytest.raises(ValueError) as got:
        raise_everywhere(err)
    assert got.value is err


WORKER = textwrap.dedent("""
    import sys
    from jaxlab.config import ConfigError
    from jaxlab.distributed import DistributedConfig, allgather_json, initialize, raise_everywhere
    port, pid = sys.argv[1], int(sys.argv[2])
    initialize(DistributedConfig(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid))
    print("GATHER", allgather_json({"id": pid, "text": "x" * (1 + 5 * pid)}), flush=True)
    try:
        raise_everywhere(ConfigError("data.path: no such file") if pid == 0 else None)
    except Exception as e:
        print("RAISED", type(e).__name__, e, flush=True)
""")


@pytest.mark.slow
def test_two_processes_gather_and_fail_together(tmp_path):
    logs = [log for _, log in launch(lambda i, port: ["-c", WORKER, str(port), str(i)], devices=1, timeout=180)]
    want = "GATHER [{'id': 0, 'text': 'x'}, {'id': 1, 'text': 'xxxxxx'}]"  # unequal lengths, process order
    assert all(want in log for log in logs), logs
    assert "RAISED ConfigError data.path: no such file\n" in logs[0]
    assert "RAISED ConfigError data.path: no such file (reported by another process)" in logs[1]
