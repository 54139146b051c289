"""The LLEP bench's measurements (imports JAX: ``bench.py`` sets the device count first).

See ``bench.py`` for which numbers are measured and which modelled.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from experiments.bench.timing import Stat, time_interleaved
from experiments.llep import compiled as xla
from experiments.llep.cost_model import Link, Shape, collective_seconds
from experiments.llep.routing import route
from experiments.llep.rows_ffn import RowsFFN, device_group_sizes
from experiments.llep.share import capture_body, device_shards, local_program, share_inputs
from jaxlab.parallel import EPConfig, ExpertPlan, plan_standard, routed_experts
from jaxlab.parallel import bounded_exchange, weight_exchange
from jaxlab.parallel.device_planner import capacity, plan_llep_device
from jaxlab.parallel.dispatch import fit_to_capacity

METHODS = ("standard", "llep")


def configs(args: argparse.Namespace) -> dict[str, EPConfig]:
    """Standard EP: no-drop all_to_all.  LLEP: device planner, default CPU transport (bounded)."""
    return {
        "standard": EPConfig(transport="all_to_all", gmm_impl=args.gmm_impl),
        "llep": EPConfig(
            max_extra_experts=args.max_extra,
            min_chunk=args.min_chunk,
            alpha=args.alpha,
            fallback_lambda=args.fallback_lambda,
            gmm_impl=args.gmm_impl,
        ),
    }


def layer_inputs(shape: Shape, seed: int) -> tuple:
    """x, combine weights and expert weights (f32; ids come per skew)."""
    rng = np.random.default_rng(seed)
    e, d, f, t = shape.experts, shape.d_model, shape.d_ff, shape.tokens
    x = rng.standard_normal((t, d), np.float32)
    cw = rng.random((t, shape.top_k), np.float32)
    wg, wu = (rng.standard_normal((e, d, f), np.float32) / np.sqrt(d) for _ in range(2))
    wd = rng.standard_normal((e, f, d), np.float32) / np.sqrt(f)
    return tuple(jnp.asarray(a) for a in (x, cw, wg, wu, wd))


def compile_layer(ep: str, mesh: Mesh, config: EPConfig, args: tuple):
    """The jitted forward layer as the model runs it, compiled for the mesh."""
    fn = jax.jit(lambda *a: routed_experts(*a, ep=ep, mesh=mesh, config=config)[0])
    return fn.lower(*args).compile()


def calibrate_flops(shape: Shape, repeats: int, rows: int = 1024) -> Stat:
    """Measured FLOP/s of this CPU on one dense expert FFN (scales the link model)."""
    x, _, wg, wu, wd = layer_inputs(Shape("cal", 1, 1, shape.d_model, shape.d_ff, rows), 1)

    @jax.jit
    def ffn(x):
        return (jax.nn.silu(x @ wg[0]) * (x @ wu[0])) @ wd[0]

    samples = time_interleaved({"ffn": lambda: ffn(x).block_until_ready()}, repeats)["ffn"]
    return Stat.of([rows * shape.flops_per_row / s for s in samples])


def _plan(counts: np.ndarray, num_devices: int, args) -> dict:
    plan = jax.jit(
        functools.partial(
            plan_llep_device,
            num_devices=num_devices,
            max_extra=args.max_extra,
            min_chunk=args.min_chunk,
            alpha=args.alpha,
            lambda_=args.fallback_lambda,
        )
    )(jnp.asarray(counts, jnp.int32))
    arrays = tuple(np.asarray(a) for a in plan.arrays())
    return {
        "plan": ExpertPlan(*arrays, np.asarray(plan.device_load)),
        "load": np.asarray(plan.device_load),
        "over": int(plan.over_capacity),
        "copied": int(np.unique(np.asarray(plan.extra_experts)[np.asarray(plan.extra_experts) >= 0]).size),
    }


def _trip_counts(method: str, plan: dict, matrix, recv_rows: int, num_devices: int, pair_rows) -> dict:
    if method == "standard":
        return {}
    c = pair_rows or bounded_exchange.default_pair_rows(recv_rows, num_devices)
    rounds = int(bounded_exchange.num_rounds(fit_to_capacity(matrix, recv_rows)[1], c))
    return {weight_exchange.SCOPE: plan["copied"], bounded_exchange.SCOPE: rounds}


def _device_point(num_devices: int, args, shape: Shape, inputs: tuple, link: Link, rows_ffn: RowsFFN) -> list[dict]:
    mesh = Mesh(np.array(jax.devices()[:num_devices]), ("expert",))
    cfgs = configs(args)
    x, cw, wg, wu, wd = inputs
    ids0 = jnp.zeros((shape.tokens, shape.top_k), jnp.int32)
    layer_args = (x, ids0, cw, wg, wu, wd)
    progs, locals_ = {}, {}
    for m in METHODS:
        comp = compile_layer(m, mesh, cfgs[m], layer_args)
        progs[m] = {"memory": xla.memory(comp), "hlo": comp.as_text()}
        body, _ = capture_body(m, mesh, cfgs[m], layer_args)
        locals_[m] = local_program(body, shape.experts, num_devices)
        print(f"  D={num_devices} {m}: peak {progs[m]['memory']['peak'] / 2**20:.1f} MiB/device", flush=True)
    recv_rows = capacity(shape.tokens * shape.top_k, num_devices, args.min_chunk, args.alpha, args.fallback_lambda)
    points = []
    for skew in args.skews.split(","):
        ids = route(skew, shape.tokens, shape.top_k, shape.experts, seed=args.seed)
        counts = np.bincount(ids.ravel(), minlength=shape.experts)
        plan = _plan(counts, num_devices, args)
        std_load = counts.reshape(num_devices, -1).sum(1)
        fns, point = {}, {}
        plans = {"standard": plan_standard(counts, num_devices), "llep": plan["plan"]}
        for m in METHODS:
            c_counts, by_source, matrix = share_inputs(ids, plans[m], shape.experts, num_devices)
            sizes = device_group_sizes(plans[m], num_devices)
            _, global_args = capture_body(m, mesh, cfgs[m], (x, jnp.asarray(ids), cw, wg, wu, wd))
            load = std_load if m == "standard" else plan["load"]
            timed = np.argsort(-load, kind="stable")[: max(1, args.timed_devices)]
            for i in timed:
                shards = device_shards(global_args, int(i), num_devices)
                me = jnp.int32(i)
                fn = locals_[m]
                fns[f"{m}/{i}"] = lambda fn=fn, s=shards, me=me, a=(c_counts, by_source, matrix): jax.block_until_ready(
                    fn(s, me, *a)
                )
                fns[f"rows:{m}/{i}"] = functools.partial(rows_ffn.run, sizes[i])
            trips = _trip_counts(m, plan, np.asarray(matrix), recv_rows, num_devices, cfgs[m].pair_rows)
            traffic = xla.traffic(progs[m]["hlo"], trips, num_devices)
            point[m] = {
                "max_load": int(load.max()),
                "mean_load": float(load.mean()),
                "dropped": plan["over"] if m == "llep" else 0,
                "weight_copies": plan["copied"] if m == "llep" else 0,
                "trips": trips,
                "wire_bytes": xla.total_wire_bytes(traffic),
                "comm_s": collective_seconds(traffic, link),
                "memory": progs[m]["memory"],
            }
        planner = jax.jit(
            functools.partial(
                plan_llep_device,
                num_devices=num_devices,
                max_extra=args.max_extra,
                min_chunk=args.min_chunk,
                alpha=args.alpha,
                lambda_=args.fallback_lambda,
            )
        )
        c = jnp.asarray(counts, jnp.int32)
        fns["planner"] = lambda planner=planner, c=c: jax.block_until_ready(planner(c))
        samples = time_interleaved(fns, args.repeats)
        for m in METHODS:
            per_device = {k: Stat.of(v) for k, v in samples.items() if k.startswith(m + "/")}
            slowest = max(per_device.values(), key=lambda s: s.median)
            point[m]["share_s"] = vars(slowest)
            point[m]["step_s"] = {k: getattr(slowest, k) + point[m]["comm_s"] for k in ("median", "min", "max")}
            ffn = [Stat.of(v) for k, v in samples.items() if k.startswith(f"rows:{m}/")]
            point[m]["rows_ffn_s"] = vars(max(ffn, key=lambda s: s.median))
            point[m]["rows_step_s"] = {
                k: point[m]["rows_ffn_s"][k] + point[m]["comm_s"] for k in ("median", "min", "max")
            }
        point["planner_s"] = vars(Stat.of(samples["planner"]))
        point.update(devices=num_devices, skew=skew, recv_rows=recv_rows)
        point["speedup"] = _ratio(point["standard"]["step_s"], point["llep"]["step_s"])
        point["rows_speedup"] = _ratio(point["standard"]["rows_step_s"], point["llep"]["rows_step_s"])
        point["memory_ratio"] = point["llep"]["memory"]["peak"] / point["standard"]["memory"]["peak"]
        points.append(point)
        print(
            f"  D={num_devices} {skew}: speedup {point['speedup']['median']:.2f}x "
            f"[{point['speedup']['min']:.2f}-{point['speedup']['max']:.2f}], "
            f"LLEP/standard peak memory {point['memory_ratio']:.2f}x",
            flush=True,
        )
    return points


def _ratio(std: dict, llep: dict) -> dict:
    """standard / LLEP step time: median over median, and the extremes the repeats allow."""
    return {"median": std["median"] / llep["median"], "min": std["min"] / llep["max"], "max": std["max"] / llep["min"]}


def memory_sweep(args: argparse.Namespace, devices: list[int]) -> list[dict]:
    """Compiled per-device memory of both programs at more tokens per device (compile only:
    arguments are shape structs, nothing is allocated, so the paper's 32K tokens/device fits)."""
    out = []
    for d in devices:
        mesh = Mesh(np.array(jax.devices()[:d]), ("expert",))
        for per_device in (int(t) for t in args.memory_tokens_per_device.split(",") if t):
            t, e, k = per_device * d, args.experts, args.top_k
            f32 = functools.partial(jax.ShapeDtypeStruct, dtype=jnp.float32)
            structs = (
                f32((t, args.d_model)),
                jax.ShapeDtypeStruct((t, k), jnp.int32),
                f32((t, k)),
                f32((e, args.d_model, args.d_ff)),
                f32((e, args.d_model, args.d_ff)),
                f32((e, args.d_ff, args.d_model)),
            )
            row = {"devices": d, "tokens_per_device": per_device}
            for m, config in configs(args).items():
                row[m] = xla.memory(compile_layer(m, mesh, config, structs))
            row["memory_ratio"] = row["llep"]["peak"] / row["standard"]["peak"]
            print(
                f"  memory D={d} {per_device} tokens/device: LLEP/standard peak {row['memory_ratio']:.2f}x", flush=True
            )
            out.append(row)
    return out


def run(args: argparse.Namespace, devices: list[int]) -> tuple[list[dict], dict]:
    shape = Shape("bench", args.experts, args.top_k, args.d_model, args.d_ff, args.tokens)
    for d in devices:
        if shape.experts % d or shape.tokens % d:
            raise ValueError(f"--devices: {d} must divide --experts {shape.experts} and --tokens {shape.tokens}")
    flops = calibrate_flops(shape, args.repeats)
    bandwidth = args.link_gbps * 1e9 if args.link_gbps > 0 else flops.median / args.flops_per_byte
    link = Link(bandwidth, args.latency_us * 1e-6)
    print(
        f"CPU {flops.median / 1e9:.1f} GFLOP/s [{flops.min / 1e9:.1f}-{flops.max / 1e9:.1f}] measured "
        f"on the expert FFN; link {bandwidth / 1e9:.3f} GB/s, {args.latency_us} us modelled",
        flush=True,
    )
    inputs = layer_inputs(shape, args.seed)
    rows_ffn = RowsFFN(shape.d_model, shape.d_ff, args.seed)
    results = []
    for d in devices:
        results += _device_point(d, args, shape, inputs, link, rows_ffn)
    meta = {
        "memory_sweep": memory_sweep(args, devices),
        "cpu_flops": vars(flops),
        "link_bytes_per_s": bandwidth,
        "latency_s": link.latency_s,
        "shape": vars(shape),
        "dtype": "float32",
        "backend": jax.default_backend(),
    }
    return results, meta
