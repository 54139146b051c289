"""jaxlab.distributed: config validation, and the cross-host helpers (one process here, two over gloo below)."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxlab.distributed import DistributedConfig, allgather_json, initialize, raise_everywhere

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kwargs,field", [({"num_processes": 0}, "distributed.num_processes"),
                                          ({"num_processes": 2, "process_id": 2}, "distributed.process_id"),
                                          ({"process_id": -1}, "distributed.process_id"),
                                          ({"initialization_timeout": 0}, "distributed.initialization_timeout")])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistributedConfig(**kwargs)


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
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=180)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    want = "GATHER [{'id': 0, 'text': 'x'}, {'id': 1, 'text': 'xxxxxx'}]"  # unequal lengths, process order
    assert all(want in log for log in logs), logs
    assert "RAISED ConfigError data.path: no such file\n" in logs[0]
    assert "RAISED ConfigError data.path: no such file (reported by another process)" in logs[1]
