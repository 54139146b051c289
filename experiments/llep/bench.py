"""LLEP vs standard expert parallelism over routing skew, device count and layer shape.

Run: ``python -m experiments.llep.bench --output_dir /tmp/llep`` (a few minutes on a CPU).

Per point and method it reports max/mean token copies per device, peak bytes
per device, bytes moved per device, and step time = measured compute + modelled
collectives:

* measured: every timed device's expert FFN work, run for real on this CPU
  (``timing.py``); the step's compute is the slowest device.  Devices are timed
  in order of load; ``--timed_devices N`` times only the N most loaded (work is
  per row, so lighter devices finish earlier), 0 times all of them.
* modelled: bytes moved, peak bytes (``cost_model.py``) and collective time.
  The link is modelled *relative to the measured CPU speed*: its bandwidth is
  ``measured FLOP/s / --flops_per_byte`` (default 800, roughly a TPU v5p's bf16
  FLOP/s over its ICI bandwidth), so compute and communication keep an
  accelerator's proportions; ``--link_gbps`` sets an absolute bandwidth instead.
  LLEP weight copies travel as a pipelined broadcast per expert by default
  (``--weight_transfer egress`` charges the owner for every copy).

Bytes assume bf16 activations and weights; the timed matmuls run in f32.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from experiments.llep.cost_model import Link, Shape, collective_seconds, peak_bytes, plan_traffic
from experiments.llep.report import print_table, save_plot, summarise_goals
from experiments.llep.routing import SKEWS, counts_by_source, route
from experiments.llep.timing import ExpertBench, calibrate_flops, device_group_sizes
from jaxlab.parallel import plan_llep, plan_standard

SHAPES = {
    "small": Shape("small", experts=64, top_k=2, d_model=512, d_ff=1024, tokens=8192),
    "gpt-oss-120b": Shape("gpt-oss-120b", experts=128, top_k=4, d_model=2880, d_ff=2880, tokens=2048),
}
BYTES = 2  # bf16


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--shapes", default="small,gpt-oss-120b", help=f"comma list of {list(SHAPES)}")
    p.add_argument("--devices", default="4,8,16,64")
    p.add_argument("--skews", default=",".join(SKEWS))
    p.add_argument("--token_scale", type=float, default=1.0, help="multiply every shape's tokens")
    p.add_argument("--max_extra", type=int, default=2, help="LLEP cap: weight copies per device")
    p.add_argument("--min_chunk", type=int, default=0,
                   help="LLEP smallest chunk worth a weight copy; 0 = break-even rows under the link model")
    p.add_argument("--flops_per_byte", type=float, default=800.0)
    p.add_argument("--link_gbps", type=float, default=0.0, help="absolute link bandwidth, GB/s")
    p.add_argument("--weight_transfer", choices=("broadcast", "egress"), default="broadcast",
                   help="LLEP weight copies: pipelined broadcast per expert, or owner sends each copy")
    p.add_argument("--latency_us", type=float, default=10.0)
    p.add_argument("--timed_devices", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="best-of repeats per timed device")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _method(name, plan, by_source, shape, num_devices, link, bench, args, timings: dict) -> dict:
    traffic = plan_traffic(plan, by_source, shape, BYTES, BYTES, args.weight_transfer)
    peak = peak_bytes(plan, shape, num_devices, BYTES, BYTES)
    sizes = device_group_sizes(plan, num_devices)
    order = np.argsort(-plan.device_load, kind="stable")
    timed = order if args.timed_devices <= 0 else order[: args.timed_devices]
    compute = 0.0
    for i in timed:  # identical work (same rows per group) is timed once per point
        key = tuple(np.trim_zeros(sizes[i], "b"))
        if key not in timings:
            timings[key] = bench.seconds(sizes[i], args.repeats)
        compute = max(compute, timings[key])
    comm = collective_seconds(traffic, link, with_weights=name == "llep")
    return {
        "max_tokens": int(plan.device_load.max()),
        "mean_tokens": float(plan.device_load.mean()),
        "peak_bytes": int(peak.max()),
        "bytes_moved": int((traffic["token_bytes"] + traffic["weight_bytes"]).max()),
        "weight_copies": int((plan.extra_experts >= 0).sum()),
        "compute_s_measured": compute,
        "collective_s_modelled": comm,
        "step_s": compute + comm,
    }


def run(args: argparse.Namespace) -> list[dict]:
    results = []
    for shape_name in args.shapes.split(","):
        if shape_name not in SHAPES:
            raise ValueError(f"--shapes: unknown shape {shape_name!r}, expected one of {list(SHAPES)}")
        base = SHAPES[shape_name]
        shape = Shape(base.name, base.experts, base.top_k, base.d_model, base.d_ff,
                      int(base.tokens * args.token_scale))
        bench = ExpertBench(shape, max_rows=shape.tokens * shape.top_k, seed=args.seed)
        flops = calibrate_flops(bench, shape)
        bandwidth = args.link_gbps * 1e9 if args.link_gbps > 0 else flops / args.flops_per_byte
        link = Link(bandwidth, args.latency_us * 1e-6)
        copy_rows = shape.expert_params * BYTES / bandwidth * flops / shape.flops_per_row
        min_chunk = args.min_chunk or max(1, int(np.ceil(copy_rows)))
        print(f"[{shape.name}] CPU {flops / 1e9:.1f} GFLOP/s measured; link {bandwidth / 1e9:.2f} GB/s "
              f"modelled; LLEP min_chunk {min_chunk} rows, cap {args.max_extra} copies/device")
        for num_devices in (int(d) for d in args.devices.split(",")):
            if shape.experts % num_devices or shape.tokens % num_devices:
                print(f"  skip D={num_devices}: must divide experts={shape.experts} and tokens={shape.tokens}")
                continue
            for skew in args.skews.split(","):
                t0 = time.perf_counter()
                ids = route(skew, shape.tokens, shape.top_k, shape.experts, seed=args.seed)
                by_source = counts_by_source(ids, num_devices, shape.experts)
                counts = by_source.sum(0)
                plans = {"standard": plan_standard(counts, num_devices),
                         "llep": plan_llep(counts, num_devices, args.max_extra, min_chunk)}
                row = {"shape": shape.name, "devices": num_devices, "skew": skew,
                       "tokens": shape.tokens, "min_chunk": min_chunk}
                timings: dict = {}
                for name, plan in plans.items():
                    row[name] = _method(name, plan, by_source, shape, num_devices, link, bench, args,
                                        timings)
                row["speedup"] = row["standard"]["step_s"] / row["llep"]["step_s"]
                row["memory_ratio"] = row["standard"]["peak_bytes"] / row["llep"]["peak_bytes"]
                results.append(row)
                print(f"  D={num_devices:<3} {skew:<9} speedup {row['speedup']:.2f}x  "
                      f"memory {row['memory_ratio']:.2f}x  ({time.perf_counter() - t0:.1f}s)", flush=True)
    return results


def main(argv=None) -> None:
    args = _parse(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    results = run(args)
    with open(os.path.join(args.output_dir, "llep_bench.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    print_table(results)
    summarise_goals(results)
    save_plot(results, os.path.join(args.output_dir, "llep_speedup_vs_skew.png"))
    print(f"wrote {args.output_dir}/llep_bench.json and llep_speedup_vs_skew.png")


if __name__ == "__main__":
    main()
