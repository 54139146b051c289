"""Compile time of a train step's gradient vs depth, unrolled layers vs ``model.scan_layers``.

``python experiments/bench/bench_scan_compile.py [--layers 2 4 8 16] [--repeats 3]``

Measured (all columns): wall time of ``jax.jit(value_and_grad(loss)).lower(...).compile()`` for a random
Llama-shaped model (hidden 256, 4 heads, seq 128, batch 2), median / min / max of ``--repeats`` fresh
compiles (the jit cache is cleared between them). On a shared CPU these are upper bounds.

Run of 2026-12-07 20:10 UTC (2-core CPU, other jobs running): layers 2 / 8 / 16 (2 repeats each):
unrolled 1.52 / 1.96 / 2.97 s, scanned 2.32 / 3.09 / 3.78 s; layers 32 / 64 (1 repeat): unrolled 7.97 / 12.33 s,
scanned 4.55 / 9.32 s. Scanning pays off past about 16 layers here; it is not depth-independent (the
per-layer parameter stack grows with depth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.train.loss import masked_cross_entropy


def compile_seconds(num_layers: int, scan: bool, repeats: int) -> list[float]:
    cfg = tiny_config(
        "llama",
        num_layers=num_layers,
        hidden_size=256,
        intermediate_size=512,
        num_heads=4,
        num_kv_heads=2,
        head_dim=64,
        scan_layers=scan,
    )
    graphdef, params, rest = nnx.split(init_model(cfg, seed=0), nnx.Param, ...)
    ids = jnp.zeros((2, 129), jnp.int32)

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(ids[:, :-1])
        total, n = masked_cross_entropy(logits, ids[:, 1:], jnp.ones_like(ids[:, 1:]))
        return total / n

    out = []
    for _ in range(repeats):
        jax.clear_caches()
        t0 = time.perf_counter()
        jax.jit(jax.value_and_grad(loss)).lower(params).compile()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    print("| layers | unrolled compile s (median [min, max]) | scan_layers compile s | ratio |")
    print("|---|---|---|---|")
    for n in args.layers:
        u, s = compile_seconds(n, False, args.repeats), compile_seconds(n, True, args.repeats)
        mu, ms = statistics.median(u), statistics.median(s)
        rows.append({"layers": n, "unrolled_s": u, "scan_s": s})
        print(
            f"| {n} | {mu:.2f} [{min(u):.2f}, {max(u):.2f}] | {ms:.2f} [{min(s):.2f}, {max(s):.2f}] | {mu / ms:.1f}x |",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
