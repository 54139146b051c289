"""SmolLM2-135M prefill and greedy-decode throughput: jaxlab vs transformers, side by side.

Both run on the same machine in one process, on the same weights (float32).
Prefill = one forward over ``batch x prompt_len`` tokens. Decode tokens/s is
measured from two generation lengths so the prefill cancels out:
``batch * (n_long - n_short) / (t(n_long) - t(n_short))``. Each timing is the
best of ``--repeats`` after a warm-up (compilation excluded). Prints a table
and the jaxlab/transformers ratios, writes JSON; on a GPU also reports MFU.

    python experiments/bench/model_throughput.py --output_dir runs/bench
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _jax_block(x):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def bench_jaxlab(model, prompts: np.ndarray, n_short: int, n_long: int, repeats: int) -> dict:
    from flax import nnx

    from jaxlab.generate import generate

    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda s, ids: nnx.merge(graphdef, s)(ids))
    ids = jnp.asarray(prompts)
    t_prefill = best_time(lambda: fwd(state, ids).block_until_ready(), repeats)
    rows = prompts.tolist()
    gen = {n: best_time(lambda n=n: generate(model, None, rows, max_new_tokens=n, stop_token_ids=[],
                                             pad_to_multiple=1), repeats) for n in (n_short, n_long)}
    return {"prefill_s": t_prefill, "gen_short_s": gen[n_short], "gen_long_s": gen[n_long]}


def bench_torch(hf, prompts: np.ndarray, n_short: int, n_long: int, repeats: int, pad_id: int) -> dict:
    import torch

    ids = torch.tensor(prompts)

    def fwd():
        with torch.no_grad():
            hf(ids)

    def gen(n):
        with torch.no_grad():
            hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, pad_token_id=pad_id)

    return {"prefill_s": best_time(fwd, repeats), "gen_short_s": best_time(lambda: gen(n_short), repeats),
            "gen_long_s": best_time(lambda: gen(n_long), repeats)}


def rates(t: dict, batch: int, prompt_len: int, n_short: int, n_long: int) -> dict:
    return {"prefill_tok_s": batch * prompt_len / t["prefill_s"],
            "decode_tok_s": batch * (n_long - n_short) / max(t["gen_long_s"] - t["gen_short_s"], 1e-9)}


def model_flops_per_token(cfg) -> float:
    """2 x parameters in matmuls (embedding lookup excluded), the usual MFU numerator."""
    d, L = cfg.hidden_size, cfg.num_layers
    attn = sum(d * cfg.head_dim * (2 * h + 2 * kv) for h, kv in zip(cfg.layer_heads, cfg.layer_kv_heads))
    mlp = sum(3 * d * f for f in cfg.layer_intermediate)
    return 2.0 * (attn + mlp + d * cfg.vocab_size)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_dir", default="runs/bench_throughput")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt_len", type=int, default=128)
    ap.add_argument("--n_short", type=int, default=8)
    ap.add_argument("--n_long", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak_tflops", type=float, default=None,
                    help="device peak (dense f32/tf32) for MFU; default: known GPU table or none on CPU")
    args = ap.parse_args(argv)

    import torch
    import transformers

    from jaxlab.models import load_smollm2
    from jaxlab.models.smollm2 import smollm2_folder

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = load_smollm2()
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_folder(), dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = rng.integers(100, model.config.vocab_size, (batch, args.prompt_len)).astype(np.int64)
        ours = rates(bench_jaxlab(model, prompts, args.n_short, args.n_long, args.repeats), batch,
                     args.prompt_len, args.n_short, args.n_long)
        ref = rates(bench_torch(hf, prompts, args.n_short, args.n_long, args.repeats, tok.pad_token_id), batch,
                    args.prompt_len, args.n_short, args.n_long)
        row = {"batch": batch, "jaxlab": ours, "transformers": ref,
               "prefill_ratio": ours["prefill_tok_s"] / ref["prefill_tok_s"],
               "decode_ratio": ours["decode_tok_s"] / ref["decode_tok_s"]}
        if args.peak_tflops:
            flops = model_flops_per_token(model.config)
            row["mfu_prefill"] = ours["prefill_tok_s"] * flops / (args.peak_tflops * 1e12)
            row["mfu_decode"] = ours["decode_tok_s"] * flops / (args.peak_tflops * 1e12)
        results.append(row)
    out = {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
           "torch_threads": torch.get_num_threads(), "prompt_len": args.prompt_len,
           "decode_tokens": [args.n_short, args.n_long], "results": results}
    print(f"\nSmolLM2-135M, f32, prompt {args.prompt_len}, device {out['device']}")
    print(f"{'batch':>5} | {'prefill tok/s jaxlab':>20} {'transformers':>12} {'ratio':>6} | "
          f"{'decode tok/s jaxlab':>19} {'transformers':>12} {'ratio':>6}")
    for r in results:
        print(f"{r['batch']:>5} | {r['jaxlab']['prefill_tok_s']:>20.0f} {r['transformers']['prefill_tok_s']:>12.0f} "
              f"{r['prefill_ratio']:>6.2f} | {r['jaxlab']['decode_tok_s']:>19.1f} "
              f"{r['transformers']['decode_tok_s']:>12.1f} {r['decode_ratio']:>6.2f}")
    path = Path(args.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model_throughput.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {path / 'model_throughput.json'}")
    return out


if __name__ == "__main__":
    main()
