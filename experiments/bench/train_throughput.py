"""SmolLM2 train step (AdamW, f32) in jaxlab vs the same step in torch + transformers, side by side.

Both sides start from the same weights and the same batch of ``--batch x --seq_len`` random tokens
and do one full update per call: forward, mean next-token cross-entropy, backward, global-norm
clip to 1.0, AdamW (b1 0.9, b2 0.95, eps 1e-8, weight decay 0.1 on matrices only). jaxlab runs
its own ``make_train_step`` (jitted, state donated, as the trainer does); torch runs eager
``transformers`` with ``torch.optim.AdamW``. Before timing, the first step's loss of each side is
recorded: equal losses show that the two steps compute the same thing.

For every ``--remat`` policy the jaxlab step is compiled once: compile time (``lower + compile``,
measured) and peak bytes per device from the compiled program's ``memory_analysis()`` (via
``jaxlab.train.perf.memory_report``). The policies in ``--time_remat`` are then timed round-robin
with torch through ``experiments.bench.timing`` (median [min-max] of ``--repeats`` rounds after a
warm-up; a figure whose spread exceeds ``--max_spread`` is ``noisy`` and gets no ratio). The
achieved GFLOP/s column is modelled FLOPs (``perf.train_flops_per_token``) over measured time.

Writes ``train_throughput.json``, ``train_throughput.md`` (the table) and ``train_throughput.png``
to ``--output_dir``. ``--model tiny`` swaps SmolLM2 for a tiny random Llama (the test's mode).

    flock /tmp/heavy.lock python experiments/bench/train_throughput.py --output_dir runs/bench_train
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import (
    DEFAULT_MAX_SPREAD,
    MIN_REPEATS,
    fmt,
    fmt_ratio,
    rate,
    ratio,
    time_interleaved,
    write_json,
)

OPTIM = dict(
    learning_rate=3e-4,
    warmup_steps=0,
    decay_steps=1000,
    b1=0.9,
    b2=0.95,
    eps=1e-8,
    weight_decay=0.1,
    grad_clip_norm=1.0,
)
"""Shared by both sides; warmup 0 so the first update already uses the peak rate on both."""


def _load(kind: str) -> tuple[Any, Any]:
    """``(jaxlab DecoderLM, transformers model)`` holding the same float32 weights."""
    import torch
    import transformers

    from jaxlab.models.hf import from_hf

    if kind == "smollm2":
        from jaxlab.models.smollm2 import smollm2_folder

        hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_folder(), dtype=torch.float32)
    elif kind == "tiny":
        cfg = transformers.LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    else:
        raise ValueError(f"--model: expected 'smollm2' or 'tiny', got {kind!r}")
    return from_hf(hf), hf


def jaxlab_step(model, remat: str, batch: dict[str, np.ndarray], timed: bool = True) -> dict[str, Any]:
    """Compile the jaxlab train step under ``remat``; return compile time, memory and (if ``timed``) a callable.

    An untimed policy is compiled from abstract shapes only, so it costs no parameter or optimizer
    copy (three materialised SmolLM2 states next to torch's would not fit this machine's memory).
    """
    from jaxlab.models.decoder import with_options
    from jaxlab.train.optim import OptimConfig, make_optimizer
    from jaxlab.train.perf import memory_report
    from jaxlab.train.step import TrainState, make_train_step, split_model

    graphdef, params, rest = split_model(with_options(model, remat=remat))
    tx = make_optimizer(OptimConfig(**OPTIM))
    if timed:
        params = jax.tree.map(jnp.array, params)  # a private copy: the step donates it
        state = TrainState(params, jax.jit(tx.init)(params))
    else:
        params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        state = TrainState(params, jax.eval_shape(tx.init, params))
    placed = {k: jnp.asarray(v) for k, v in batch.items()}
    step = make_train_step(graphdef, tx, donate=True).jitted
    t0 = time.perf_counter()
    compiled = step.lower(state, rest, placed).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run() -> float:
        holder["state"], metrics = compiled(holder["state"], rest, placed)
        return float(metrics["loss"])  # float() blocks until the update is done

    return {"compile_s": compile_s, "memory": memory_report(compiled), "run": run if timed else None}


def torch_step(hf, batch: dict[str, np.ndarray], threads: int | None = None) -> Callable[[], float]:
    """The same update in eager torch: transformers forward, cross-entropy, backward, clip, AdamW.

    ``threads`` sets ``torch.set_num_threads`` (None: torch's default, one per core).
    """
    import torch
    import torch.nn.functional as F

    if threads is not None:
        torch.set_num_threads(threads)
    hf.train()
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    params = [p for p in hf.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": OPTIM["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=OPTIM["learning_rate"], betas=(OPTIM["b1"], OPTIM["b2"]), eps=OPTIM["eps"])

    def run() -> float:
        opt.zero_grad(set_to_none=True)
        logits = hf(input_ids=ids).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, OPTIM["grad_clip_norm"])
        opt.step()
        return float(loss.detach())

    return run


def _load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(out: dict) -> str:
    """The markdown table (also returned, to be written next to the JSON)."""
    lines = [
        f"{out['model']}, f32, batch {out['batch']} x seq {out['seq_len']}, AdamW, device {out['device']}; "
        f"median [min-max] of {out['repeats']} interleaved rounds, noisy = spread > {out['max_spread']:.0%}; "
        f"load {out['load_before']} -> {out['load_after']}",
        "",
        "| contender | remat | tokens/s (measured) | vs torch | GFLOP/s (modelled FLOPs / measured time) "
        "| compile s (measured) | peak MiB/device (compiled memory_analysis) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in out["jaxlab"]:
        tps = r.get("tokens_per_s")
        gflops = f"{tps.value * out['flops_per_token'] / 1e9:.1f}" if tps is not None and tps.ok else "-"
        lines.append(
            f"| jaxlab | {r['remat']} | {fmt(tps) if tps else 'not timed'} | "
            f"{fmt_ratio(r.get('ratio_vs_torch'))} | {gflops} | {r['compile_s']:.1f} | "
            f"{r['memory'].get('peak_bytes', float('nan')) / 2**20:.1f} |"
        )
    t = out["torch"]["tokens_per_s"]
    gflops = f"{t.value * out['flops_per_token'] / 1e9:.1f}" if t.ok else "-"
    lines.append(
        f"| torch + transformers (eager) | - | {fmt(t)} | {'1.00x' if t.ok else '-'} | {gflops} | - | not measured |"
    )
    text = "\n".join(lines)
    print("\n" + text)
    return text


def plot(out: dict, path: Path) -> None:
    """Tokens/s with min-max bars per contender, and compiled peak memory per remat policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    rows = [(f"jaxlab\n{r['remat']}", r["tokens_per_s"]) for r in out["jaxlab"] if r.get("tokens_per_s")]
    rows.append(("torch", out["torch"]["tokens_per_s"]))
    rows = [(n, r) for n, r in rows if r.value is not None]
    a.bar(
        [n for n, _ in rows],
        [r.value for _, r in rows],
        yerr=[[r.value - r.min for _, r in rows], [r.max - r.value for _, r in rows]],
        capsize=4,
        color=["tab:blue" if n.startswith("jaxlab") else "tab:orange" for n, _ in rows],
    )
    a.set_ylabel("tokens/s (median, min-max)")
    a.set_title(f"train step, batch {out['batch']} x {out['seq_len']}")
    b.bar([r["remat"] for r in out["jaxlab"]], [r["memory"].get("peak_bytes", 0) / 2**20 for r in out["jaxlab"]])
    b.set_ylabel("peak MiB / device (memory_analysis)")
    b.set_title("jaxlab memory by model.remat")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_dir", default="runs/bench_train")
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--remat", default="none,full,dots_saveable", help="policies to compile (time + memory)")
    ap.add_argument("--time_remat", default="none", help="policies (a subset of --remat) to time against torch")
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS)
    ap.add_argument("--max_spread", type=float, default=DEFAULT_MAX_SPREAD)
    ap.add_argument("--torch_threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    remats = args.remat.split(",")
    timed = [r for r in args.time_remat.split(",") if r]
    if not set(timed) <= set(remats):
        ap.error(f"--time_remat: {sorted(set(timed) - set(remats))} not in --remat {remats}")

    import torch

    from jaxlab.train.perf import train_flops_per_token

    model, hf = _load(args.model)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.config.vocab_size, (args.batch, args.seq_len + 1))
    batch = {
        "input_ids": ids[:, :-1].astype(np.int32),
        "targets": ids[:, 1:].astype(np.int32),
        "loss_mask": np.ones((args.batch, args.seq_len), np.float32),
    }
    load_before = _load_avg()
    rows, fns = [], {}
    for remat in remats:
        step = jaxlab_step(model, remat, batch, timed=remat in timed)
        row = {"remat": remat, "compile_s": step["compile_s"], "memory": step["memory"]}
        if remat in timed:
            row["first_loss"] = step["run"]()
            fns[f"jaxlab/{remat}"] = step["run"]
        rows.append(row)
        print(
            f"[bench] jaxlab remat={remat}: compiled in {step['compile_s']:.1f} s, "
            f"peak {step['memory'].get('peak_bytes', 0) / 2**20:.1f} MiB/device",
            flush=True,
        )
    torch_run = torch_step(hf, batch, args.torch_threads)
    torch_first = torch_run()
    fns["torch"] = torch_run
    # one more untimed step each (beyond the first-loss step above): torch's AdamW state and XLA's output buffers
    # are allocated by then, so the timed rounds see the steady state
    samples = time_interleaved(fns, repeats=args.repeats, warmup=1)
    tokens = args.batch * args.seq_len
    t_rate = rate(tokens, samples["torch"], args.max_spread)
    for row in rows:
        if row["remat"] in timed:
            row["tokens_per_s"] = rate(tokens, samples[f"jaxlab/{row['remat']}"], args.max_spread)
            row["ratio_vs_torch"] = ratio(row["tokens_per_s"], t_rate)
            row["first_loss_minus_torch"] = row["first_loss"] - torch_first
    out = {
        "model": args.model,
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens_per_step": tokens,
        "flops_per_token": train_flops_per_token(model.config, args.seq_len),
        "repeats": args.repeats,
        "max_spread": args.max_spread,
        "load_before": load_before,
        "load_after": _load_avg(),
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "jaxlab": rows,
        "torch": {"tokens_per_s": t_rate, "first_loss": torch_first},
        "samples_s": samples,
    }
    path = Path(args.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "train_throughput.md").write_text(print_table(out) + "\n")
    plot(out, path / "train_throughput.png")
    write_json(out, path / "train_throughput.json")
    return out


if __name__ == "__main__":
    main()
