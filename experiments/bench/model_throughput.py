"""SmolLM2-135M prefill and greedy-decode throughput: jaxlab vs transformers, side by side.

Both run in one process on the same weights (float32), timed round-robin (one jaxlab call,
then one transformers call, per round) so machine load hits both alike. Timing goes through
``experiments.bench.timing``: each figure is the median of ``--repeats`` (>= 5) rounds after a
warm-up (compilation excluded), with min and max; a figure whose spread ``(max-min)/median``
exceeds ``--max_spread`` is printed as ``noisy`` and gets no ratio. Prefill = one forward over
``batch x prompt_len`` tokens. Decode seconds per step = the least-squares slope of generation
time over ``--decode_lengths`` within each round (the prefill cancels), turned into tokens/s
only when every round's slope is positive, and flagged ``noisy (fit)`` when some round's time
is not linear in the length (R^2 < 0.9). Prints a table, writes JSON; on a GPU with
``--peak_tflops`` also reports MFU.

    python experiments/bench/model_throughput.py --output_dir runs/bench_throughput
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import (
    DEFAULT_MAX_SPREAD,
    MIN_REPEATS,
    Rate,
    decode_rate,
    fmt,
    fmt_ratio,
    rate,
    ratio,
    time_interleaved,
    write_json,
)

Fn = Callable[[], object]


def jaxlab_fns(model, prompts: np.ndarray, lengths: list[int]) -> dict[str, Fn]:
    """A jitted full forward (prefill) and ``generate`` for each length; each blocks until done."""
    from flax import nnx

    from jaxlab.generate import generate

    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, ids: nnx.merge(graphdef, s)(ids))
    ids = jnp.asarray(prompts)
    rows = prompts.tolist()
    fns: dict[str, Fn] = {"prefill": lambda: fwd(state, ids).block_until_ready()}
    for n in lengths:  # generate returns host lists, so it has already blocked
        fns[f"gen{n}"] = lambda n=n: generate(model, None, rows, max_new_tokens=n, stop_token_ids=[], pad_to_multiple=1)
    return fns


def torch_fns(hf, prompts: np.ndarray, lengths: list[int], pad_id: int) -> dict[str, Fn]:
    """transformers forward and ``generate`` (exactly ``n`` greedy tokens) under inference mode."""
    import torch

    ids = torch.tensor(prompts)
    mask = torch.ones_like(ids)

    def fwd():
        with torch.inference_mode():
            hf(ids)

    def gen(n: int):
        with torch.inference_mode():
            hf.generate(
                ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad_id
            )

    fns: dict[str, Fn] = {"prefill": fwd}
    for n in lengths:
        fns[f"gen{n}"] = lambda n=n: gen(n)
    return fns


def measure(
    samples: dict[str, list[float]], prefix: str, batch: int, prompt_len: int, lengths: list[int], max_spread: float
) -> dict[str, Rate]:
    """Prefill and decode rates for one contender from its interleaved samples."""
    prefill = rate(batch * prompt_len, samples[f"{prefix}/prefill"], max_spread)
    decode = decode_rate(batch, lengths, {n: samples[f"{prefix}/gen{n}"] for n in lengths}, max_spread)
    return {"prefill": prefill, "decode": decode}


def model_flops_per_token(cfg) -> float:
    """2 x parameters in matmuls (embedding lookup excluded), the usual MFU numerator."""
    d = cfg.hidden_size
    attn = sum(d * cfg.head_dim * (2 * h + 2 * kv) for h, kv in zip(cfg.layer_heads, cfg.layer_kv_heads))
    mlp = sum(3 * d * f for f in cfg.layer_intermediate)
    return 2.0 * (attn + mlp + d * cfg.vocab_size)


def print_table(out: dict) -> None:
    print(
        f"\nSmolLM2-135M, f32, prompt {out['prompt_len']}, device {out['device']}, median [min-max] of "
        f"{out['repeats']} interleaved rounds, noisy = spread > {out['max_spread']:.0%}, "
        f"load {out['load_before']} -> {out['load_after']}"
    )
    head = ["batch", "prefill tok/s jaxlab", "transformers", "ratio", "decode tok/s jaxlab", "transformers", "ratio"]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in out["results"]:
        j, t = r["jaxlab"], r["transformers"]
        print(
            f"| {r['batch']} | {fmt(j['prefill'])} | {fmt(t['prefill'])} | {fmt_ratio(r['prefill_ratio'])} | "
            f"{fmt(j['decode'], 1)} | {fmt(t['decode'], 1)} | {fmt_ratio(r['decode_ratio'])} |"
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_dir", default="runs/bench_throughput")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt_len", type=int, default=128)
    ap.add_argument("--decode_lengths", default="8,24,40", help="generation lengths for the per-step fit")
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS)
    ap.add_argument("--max_spread", type=float, default=DEFAULT_MAX_SPREAD)
    ap.add_argument(
        "--peak_tflops", type=float, default=None, help="device peak (dense f32/tf32) for MFU; default: none"
    )
    args = ap.parse_args(argv)
    lengths = [int(n) for n in args.decode_lengths.split(",")]

    import torch
    import transformers

    from jaxlab.models import load_smollm2
    from jaxlab.models.smollm2 import smollm2_folder

    model, tok = load_smollm2()
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_folder(), dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = rng.integers(100, model.config.vocab_size, (batch, args.prompt_len)).astype(np.int64)
        ours, ref = jaxlab_fns(model, prompts, lengths), torch_fns(hf, prompts, lengths, tok.pad_token_id)
        fns = {**{f"jaxlab/{k}": f for k, f in ours.items()}, **{f"transformers/{k}": f for k, f in ref.items()}}
        samples = time_interleaved(fns, repeats=args.repeats)
        j = measure(samples, "jaxlab", batch, args.prompt_len, lengths, args.max_spread)
        t = measure(samples, "transformers", batch, args.prompt_len, lengths, args.max_spread)
        row = {
            "batch": batch,
            "jaxlab": j,
            "transformers": t,
            "samples_s": samples,
            "prefill_ratio": ratio(j["prefill"], t["prefill"]),
            "decode_ratio": ratio(j["decode"], t["decode"]),
        }
        if args.peak_tflops:
            flops = model_flops_per_token(model.config) / (args.peak_tflops * 1e12)
            row["mfu_prefill"] = j["prefill"].value * flops if j["prefill"].ok else None
            row["mfu_decode"] = j["decode"].value * flops if j["decode"].ok else None
        results.append(row)
    out = {
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "torch_threads": torch.get_num_threads(),
        "prompt_len": args.prompt_len,
        "decode_lengths": lengths,
        "repeats": args.repeats,
        "max_spread": args.max_spread,
        "load_before": load_before,
        "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "results": results,
    }
    print_table(out)
    write_json(out, Path(args.output_dir) / "model_throughput.json")
    return out


if __name__ == "__main__":
    main()
