"""Throughput of ``jaxlab serve``: the same requests from 1 (sequential), 8 and 32 concurrent clients.

Starts ``jaxlab serve MODEL --warmup`` in a subprocess on localhost (compiles the
shape buckets this bench can hit), runs every concurrency level once untimed, then sends the same
``--requests`` chat requests per level for ``--rounds`` rounds, levels
interleaved round-robin so load drift on a shared machine hits all of them.
Measured: requests/s, generated tokens/s (server-reported completion tokens /
wall time), per-request latency median/max (the "no request slower than 2x the
median" check) and time to first streamed token at an idle server.  Writes
``serve_throughput.json`` and ``serve_throughput.png`` to ``--output_dir``.

    python experiments/bench/serve_throughput.py --output_dir runs/bench_serve
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.bench.timing import Stat

TOPICS = ["the sea", "a lighthouse", "autumn", "a robot", "bread", "trains", "the moon", "a garden"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_batch: int, max_tokens: int) -> subprocess.Popen:
    """``jaxlab serve`` with ``--warmup`` bounded to this bench's prompt (<= 64 tokens) and ``max_tokens``, so
    every batch-row bucket is compiled before the first timed request."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxlab.cli",
            "serve",
            model,
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
            "--max-model-len",
            "512",
            "--warmup",
            "--warmup-max-prompt",
            "64",
            "--warmup-max-tokens",
            str(max_tokens),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jaxlab serve exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(1.0)
    proc.kill()
    raise TimeoutError("jaxlab serve did not come up in 600 s")


def run_level(client, model: str, messages: list, concurrency: int, max_tokens: int) -> dict:
    """Every request is streamed, so each one also gives its time to first token under this load."""

    def one(msgs):
        t0 = time.perf_counter()
        first, tokens = None, 0
        for chunk in client.chat.completions.create(
            model=model,
            messages=msgs,
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return time.perf_counter() - t0, tokens, first if first is not None else float("nan")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, messages))
    wall = time.perf_counter() - t0
    tokens = sum(t for _, t, _ in results)
    return {
        "wall_s": wall,
        "requests_per_s": len(messages) / wall,
        "tokens_per_s": tokens / wall,
        "tokens": tokens,
        "latencies_s": [lat for lat, _, _ in results],
        "ttft_s": [f for _, _, f in results],
    }


def ttft(client, model: str, max_tokens: int) -> tuple[float, float]:
    """(time to first content chunk, total time) of one streamed request at an idle server."""
    t0 = time.perf_counter()
    first = None
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Tell a story."}],
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
    return first or float("nan"), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--output_dir", default="runs/bench_serve")
    ap.add_argument("--levels", default="1,8,32", help="concurrent clients; 1 = sequential baseline")
    ap.add_argument("--requests", type=int, default=32, help="requests per level per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max_tokens", type=int, default=32)
    args = ap.parse_args()
    import openai

    levels = [int(x) for x in args.levels.split(",")]
    port = _free_port()
    t_start = time.perf_counter()
    proc = start_server(args.model, port, max(levels), args.max_tokens)
    startup_s = time.perf_counter() - t_start
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
    messages = [
        [{"role": "user", "content": f"Write two sentences about {TOPICS[i % len(TOPICS)]} (#{i})."}]
        for i in range(args.requests)
    ]
    try:
        t0 = time.perf_counter()
        for c in levels:  # warm-up: compile each level's batch bucket
            run_level(client, args.model, messages[:c], c, args.max_tokens)
        warmup_s = time.perf_counter() - t0
        runs: dict[int, list[dict]] = {c: [] for c in levels}
        for _ in range(args.rounds):
            for c in levels:
                runs[c].append(run_level(client, args.model, messages, c, args.max_tokens))
                r = runs[c][-1]
                print(
                    f"clients={c:3d} wall={r['wall_s']:.1f}s req/s={r['requests_per_s']:.2f} "
                    f"tok/s={r['tokens_per_s']:.1f}",
                    flush=True,
                )
        first = [ttft(client, args.model, args.max_tokens) for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    table = {}
    for c, rs in runs.items():
        lat = Stat.of([x for r in rs for x in r["latencies_s"]])
        tok = Stat.of([r["tokens_per_s"] for r in rs])
        table[c] = {
            "tokens_per_s": tok.__dict__,
            "ttft_s": Stat.of([x for r in rs for x in r["ttft_s"]]).__dict__,
            "requests_per_s": Stat.of([r["requests_per_s"] for r in rs]).__dict__,
            "latency_s": lat.__dict__,
            "max_over_median_latency": lat.max / lat.median,
            "tokens": [r["tokens"] for r in rs],
        }
    base = table[levels[0]]["tokens_per_s"]["median"]
    for c in levels:
        table[c]["speedup_vs_sequential"] = table[c]["tokens_per_s"]["median"] / base
    out = {
        "model": args.model,
        "requests": args.requests,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "startup_s": startup_s,
        "warmup_s": warmup_s,
        "ttft_s": [f for f, _ in first],
        "stream_total_s": [t for _, t in first],
        "levels": table,
        "measured": "all columns measured on this machine (wall clock, localhost)",
    }
    path = Path(args.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "serve_throughput.json").write_text(json.dumps(out, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    meds = [table[c]["tokens_per_s"]["median"] for c in levels]
    errs = [
        [m - table[c]["tokens_per_s"]["min"] for m, c in zip(meds, levels)],
        [table[c]["tokens_per_s"]["max"] - m for m, c in zip(meds, levels)],
    ]
    ax.bar([str(c) for c in levels], meds, yerr=errs, capsize=4)
    ax.set_xlabel("concurrent clients (1 = sequential)")
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"jaxlab serve {args.model}: {args.requests} requests x {args.rounds} rounds")
    fig.tight_layout()
    fig.savefig(path / "serve_throughput.png", dpi=120)
    for c in levels:
        t = table[c]
        print(
            f"clients={c:3d} tok/s median {t['tokens_per_s']['median']:.1f} "
            f"[{t['tokens_per_s']['min']:.1f}, {t['tokens_per_s']['max']:.1f}]  x{t['speedup_vs_sequential']:.2f}  "
            f"latency median {t['latency_s']['median']:.2f}s max/median {t['max_over_median_latency']:.2f}  "
            f"ttft median {t['ttft_s']['median']:.2f}s max {t['ttft_s']['max']:.2f}s"
        )
    print(f"ttft {out['ttft_s']}  wrote {path / 'serve_throughput.json'}")


if __name__ == "__main__":
    main()
