"""Test setup: 8 fake CPU devices, set before JAX starts; offline hub."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, but no more than the free memory carries (about 6 GiB for a
    SmolLM2-loading test) and at most 8, so a 2-core CI box runs 2 and a laptop does not swap."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    free_gib = 6.0 * cores
    try:  # MemAvailable counts reclaimable page cache, which SC_AVPHYS_PAGES does not
        with open("/proc/meminfo") as f:
            free_gib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) / 2**20
    except (OSError, StopIteration, ValueError):
        pass
    return max(1, min(cores, int(free_gib // 6), 8))
