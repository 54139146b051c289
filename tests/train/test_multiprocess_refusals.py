"""Runners that are not multi-process-correct refuse two processes with the same ConfigError on every host.

One two-process launch (gloo, 2 x 2 fake CPU devices) runs ``jaxlab run`` on the
PTL, language-neurons and RL text2vis configs, and on GRPO without the mesh its
multi-process path needs, in turn, in the same interpreters: each must exit 2
("config error") naming the key and why, on both processes, before it writes
anything under its ``output_dir``.
"""

import textwrap

import pytest

from tests.train.two_procs import ROOT, launch

ONE_PROCESS = "distributed.num_processes: the {} runner runs in one process only ("
REFUSALS = {
    "ptl_smollm2.yaml": ONE_PROCESS.format("PTL"),
    "language_neurons_smollm2.yaml": ONE_PROCESS.format("language-neurons"),
    "rl_text2vis_smollm2.yaml": ONE_PROCESS.format("RL text2vis"),
    "grpo_tiny_math.yaml": "mesh: a multi-process GRPO run (2 processes) needs a mesh over every process's",
}

WORKER = textwrap.dedent("""
    import sys
    from jaxlab import cli
    port, pid, out = sys.argv[1], sys.argv[2], sys.argv[3]
    for i, config in enumerate(sys.argv[4:]):
        rc = cli.main(["run", config, f"output_dir={out}/{i}", f"distributed.coordinator_address=localhost:{port}",
                       "distributed.num_processes=2", f"distributed.process_id={pid}"])
        print("EXIT", i, rc, flush=True)
""")


@pytest.mark.slow
def test_single_process_runners_refuse_two_processes_on_every_host(tmp_path):
    configs = [str(ROOT / "configs" / name) for name in REFUSALS]
    results = launch(lambda i, port: ["-c", WORKER, str(port), str(i), str(tmp_path), *configs], devices=2, timeout=300)
    for pid, (_, log) in enumerate(results):
        for i, (config, message) in enumerate(REFUSALS.items()):
            assert f"EXIT {i} 2\n" in log, f"process {pid}, {config}:\n{log[-3000:]}"
            assert f"jaxlab run: config error: {message}" in log, f"process {pid}, {config}:\n{log[-3000:]}"
        assert log.count("this run has 2 processes") == 3
    assert not any((tmp_path / str(i)).exists() for i in range(len(REFUSALS)))  # refused before writing anything
