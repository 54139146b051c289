"""LLEP vs standard expert parallelism, measured on the compiled programs (issue 8).

Run: ``python -m experiments.llep.bench --output_dir runs/llep`` (sets its own
``--xla_force_host_platform_device_count``; run it under ``flock /tmp/heavy.lock``).

For every device count D (fake CPU devices) and routing skew, both methods are
the library's own programs: standard EP = ``routed_experts(ep="standard")``
with the no-drop all_to_all (worst-case buffers, the only no-drop guarantee a
static program can give); LLEP = ``routed_experts(ep="llep")`` with the device
planner and its default CPU transport (plan-bounded ``bounded`` rounds).

* measured, memory: ``memory_analysis()`` of the jitted, SPMD-partitioned
  forward program (per-device temp / argument / output / peak bytes).  Static
  shapes: the same for every skew (the program cannot adapt to the data).
* measured, compute: each timed device's compiled share of the layer
  (``share.py``: routing, device planner, weight-exchange loop, dispatch
  buffers, the project's gmm kernel, combine; collectives stubbed to what
  that device receives), on this CPU, median [min-max] of ``--repeats`` runs
  through ``experiments/bench/timing.py``, all contenders interleaved.  The
  step's compute is the slowest timed device (``--timed_devices`` most loaded).
* measured, planner: ``plan_llep_device`` alone, jitted, same timing (it is
  also inside LLEP's share; shown apart).
* measured from the HLO, bytes: each collective's per-device bytes in the
  compiled program times how often it runs (loop trip counts from the plan:
  copied experts, bounded rounds).
* modelled, communication: those bytes under ``cost_model``'s ring link model;
  bandwidth = measured CPU FLOP/s on the expert FFN / ``--flops_per_byte``
  (default 800, about a TPU v5p's bf16 FLOP/s over its ICI bytes/s, so
  compute and links keep an accelerator's proportions) or ``--link_gbps``.
* modelled, step time: slowest device's measured share + planner-free
  communication time (collectives do not overlap compute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--devices", default="8,16")
    p.add_argument("--skews", default="uniform,hot:0.5,hot:0.9")
    p.add_argument("--experts", type=int, default=64)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--d_model", type=int, default=512)
    p.add_argument("--d_ff", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=2048, help="tokens per step over all devices")
    p.add_argument(
        "--memory_tokens_per_device",
        default="256,2048,32768",
        help="memory-only points (compiled, not run); 32768 is the paper's regime",
    )
    p.add_argument("--max_extra", type=int, default=2, help="LLEP weight copies per device")
    p.add_argument("--min_chunk", type=int, default=16)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument(
        "--fallback_lambda", type=float, default=1.3, help="plain EP below this max/mean load (the paper's 1.3)"
    )
    p.add_argument("--gmm_impl", default="auto", help="pallas_kernels.gmm path (auto = reference on CPU)")
    p.add_argument("--flops_per_byte", type=float, default=800.0)
    p.add_argument("--link_gbps", type=float, default=0.0, help="absolute link bandwidth, GB/s")
    p.add_argument("--latency_us", type=float, default=10.0)
    p.add_argument("--timed_devices", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _set_device_count(n: int) -> None:
    """Fake CPU devices must be set before JAX starts (an already started JAX must have them)."""
    if "jax" in sys.modules:
        import jax

        if len(jax.devices()) < n:
            raise RuntimeError(
                f"--devices needs {n} devices but JAX already started with "
                f"{len(jax.devices())}; run the bench in a fresh process"
            )
        return
    flags = [
        f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")
    ]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv=None) -> None:
    args = _parse(argv)
    devices = [int(d) for d in args.devices.split(",")]
    _set_device_count(max(devices))
    from experiments.llep.measure import run  # imports JAX: after the device count is set
    from experiments.llep.report import print_memory_table, print_table, summarise_goals

    os.makedirs(args.output_dir, exist_ok=True)
    t0 = time.perf_counter()
    results, meta = run(args, devices)
    meta["wall_s"] = time.perf_counter() - t0
    with open(os.path.join(args.output_dir, "llep_bench.json"), "w") as f:
        json.dump({"args": vars(args), "meta": meta, "results": results}, f, indent=1)
    print_table(results, meta)
    print_memory_table(meta["memory_sweep"])
    summarise_goals(results)
    print(f"wrote {args.output_dir}/llep_bench.json ({meta['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
