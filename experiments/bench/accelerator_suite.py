"""Every GPU/TPU check and benchmark in one command, one JSON (``--reduced``: tiny shapes, for the CPU test).

Sections, each recorded as ``{"status": "ok" | "skipped" | "failed", "reason": ..., ...}`` so one
missing kernel or one crash never hides the other numbers:

* ``matmul``: the dense bf16 matmul ceiling (measured TFLOP/s); every other TFLOP/s is also given
  as a fraction of it, which means something even where the vendor peak is unknown (the CPU).
* ``train``: a jaxlab train step (AdamW, bf16 params and compute, ``fsdp`` over all local devices)
  for a SmolLM2-135M-shaped and a Llama-3.2-1B-shaped random model: tokens/s (measured), MFU
  (modelled FLOPs from ``jaxlab.train.perf`` over the device peak; None where the peak is unknown),
  compile time and compiled peak bytes per device.
* ``attention``: one attention layer, forward + backward, for every ``model.attention`` path
  (``xla``, ``dot_product``, ``cudnn``, ``splash``): a path this checkout lacks, or one this platform
  cannot run (cuDNN needs a GPU, splash a TPU), is skipped with the reason.
* ``gmm``: grouped matmul forward (``gmm``) and weight gradient (``tgmm``) of ``pallas_kernels`` on the
  backend's own path, TFLOP/s and fraction of the matmul ceiling.
* ``gmm_check``: the GPU kernels (Triton, ``ragged_dot``) against the jnp reference on random inputs
  (Triton in interpret mode off the GPU), max abs error and pass/fail.
* ``generate``: greedy ``jaxlab.generate`` tokens/s on the SmolLM2 shape (prefill included).

FLOPs are modelled (stated per section); times are measured with ``experiments.bench.timing``
(median [min-max] of ``--repeats`` runs after a warm-up). Aimed at under 8 minutes on one H100.

    python -m experiments.bench.accelerator_suite --output_dir runs/accelerator
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import (
    DEFAULT_MAX_SPREAD,
    MIN_REPEATS,
    Rate,
    rate,
    time_interleaved,
    write_json,
)

SHAPES = {
    "smollm2-135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        rope_theta=100000.0,
        tie_embeddings=True,
    ),
    "llama-1b": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        rope_theta=500000.0,
        tie_embeddings=True,
    ),
}
"""Architectures only (random weights: speed does not depend on the values, and nothing is downloaded)."""

FULL = dict(
    matmul=8192,
    train_batch_per_device=8,
    train_seq=2048,
    attn_batch=4,
    attn_heads=16,
    attn_seqs=(1024, 4096),
    gmm=(16384, 2048, 1024, 8),
    gen_batch=8,
    gen_prompt=128,
    gen_new=128,
)
REDUCED = dict(
    matmul=128,
    train_batch_per_device=1,
    train_seq=32,
    attn_batch=1,
    attn_heads=2,
    attn_seqs=(32,),
    gmm=(64, 32, 48, 4),
    gen_batch=2,
    gen_prompt=8,
    gen_new=4,
)
REDUCED_SHAPE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    tie_embeddings=True,
)
ATTENTION_PATHS = {"xla": None, "dot_product": None, "cudnn": "gpu", "splash": "tpu"}
"""Every ``model.attention`` path the suite knows, and the backend it needs (None: any)."""


class Skip(Exception):
    """A section that cannot run here; its message is the recorded reason."""


def _timed(fns: dict[str, Callable[[], Any]], work: float, repeats: int, max_spread: float) -> dict[str, Rate]:
    """``work / median time`` per callable (each blocks until done), timed round-robin after a warm-up."""
    samples = time_interleaved(fns, repeats=repeats)
    return {name: rate(work, s, max_spread) for name, s in samples.items()}


def _frac(r: Rate, ceiling: float | None) -> float | None:
    return r.value / ceiling if r.value is not None and ceiling else None


def matmul_ceiling(p: dict, ctx: dict) -> dict:
    """Measured TFLOP/s of one square bf16 matmul (f32 accumulation), the ceiling the kernels are held to."""
    n = p["matmul"]
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.bfloat16) for i in (0, 1))
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    r = _timed({"mm": lambda: f(a, b).block_until_ready()}, 2.0 * n**3 / 1e12, ctx["repeats"], ctx["max_spread"])["mm"]
    ctx["ceiling"] = r.value
    return {"n": n, "tflops": r, "flops": "modelled 2 n^3"}


def _model_cfg(name: str, reduced: bool):
    from jaxlab.models.config import ModelConfig

    shape = REDUCED_SHAPE if reduced else SHAPES[name]
    return ModelConfig(**shape, dtype="bfloat16", param_dtype="bfloat16", max_position_embeddings=8192)


def train_step(name: str, p: dict, ctx: dict) -> dict:
    """One AdamW step of ``name``'s shape, bf16, sharded fsdp over every local device."""
    from jaxlab.models import init_model
    from jaxlab.sharding import (
        MeshConfig,
        activation_sharding,
        batch_sharding,
        init_on_mesh,
        make_mesh,
        shard_state,
    )
    from jaxlab.train import perf
    from jaxlab.train.optim import OptimConfig, make_optimizer
    from jaxlab.train.step import TrainState, make_train_step, split_model

    n_dev = len(jax.devices())
    mesh = make_mesh(MeshConfig(data=1, fsdp=n_dev))
    cfg = _model_cfg(name, ctx["reduced"]).replace(remat=ctx["remat"], attention=ctx["train_attention"])
    graphdef, params, rest = split_model(init_model(cfg, seed=0))
    params, rest = shard_state(params, mesh), shard_state(rest, mesh)
    tx = make_optimizer(OptimConfig(warmup_steps=0))
    state = TrainState(params, init_on_mesh(tx.init, params, mesh=mesh))
    b, s = p["train_batch_per_device"] * n_dev, p["train_seq"]
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (b, s + 1))
    host = {
        "input_ids": ids[:, :-1].astype(np.int32),
        "targets": ids[:, 1:].astype(np.int32),
        "loss_mask": np.ones((b, s), np.float32),
    }
    batch = {k: jax.device_put(v, batch_sharding(mesh, 2, batch_size=b)) for k, v in host.items()}
    step = make_train_step(graphdef, tx, donate=True).jitted
    t0 = time.perf_counter()
    with activation_sharding(mesh):
        compiled = step.lower(state, rest, batch).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = compiled(holder["state"], rest, batch)
        jax.block_until_ready(metrics["loss"])

    flops_tok = perf.train_flops_per_token(cfg, s)
    r = _timed({"step": run}, b * s, ctx["repeats"], ctx["max_spread"])["step"]
    peak = perf.peak_flops(ctx["peak_tflops"])
    achieved = r.value * flops_tok if r.value is not None else None
    return {
        "shape": "reduced" if ctx["reduced"] else name,
        "devices": n_dev,
        "mesh": dict(mesh.shape),
        "batch": b,
        "seq_len": s,
        "remat": ctx["remat"],
        "attention": cfg.attention,
        "tokens_per_s": r,
        "flops_per_token": flops_tok,
        "achieved_tflops": achieved / 1e12 if achieved else None,
        "mfu": achieved / peak if achieved and peak else None,
        "fraction_of_matmul_ceiling": (
            achieved / 1e12 / ctx["ceiling"] / n_dev if achieved and ctx.get("ceiling") else None
        ),
        "compile_s": compile_s,
        "memory": perf.memory_report(compiled),
        "flops": "modelled (jaxlab.train.perf.train_flops_per_token); MFU vs the device kind's bf16 peak",
    }


def _attention_available(path: str) -> str | None:
    """None when ``path`` can run here, else why not."""
    from jaxlab.models.config import ATTENTION_IMPLS

    if path not in ATTENTION_IMPLS:
        return f"this checkout has no model.attention={path!r} (jaxlab's ATTENTION_IMPLS: {ATTENTION_IMPLS})"
    need = ATTENTION_PATHS[path]
    if need is not None and jax.default_backend() != need:
        return f"model.attention={path!r} needs a {need.upper()}; the backend here is {jax.default_backend()}"
    return None


def train_attention(choice: str) -> str:
    """``auto``: the fastest attention path available here (cuDNN / splash / dot_product on an accelerator, else xla).

    Why not always ``xla``: at seq 2048 its float32 score tensors alone would not fit a 1B step in 80 GB.
    """
    if choice != "auto":
        why = _attention_available(choice)
        if why:
            raise ValueError(f"--train_attention: {why}")
        return choice
    if jax.default_backend() == "cpu":
        return "xla"
    return next(p for p in ("cudnn", "splash", "dot_product") if _attention_available(p) is None)


def _attention_tflops(path: str, b: int, s: int, heads: int, hd: int, ctx: dict) -> Rate:
    """Forward + backward TFLOP/s of one causal bf16 attention layer (``model.attention=path``)."""
    from flax import nnx

    from jaxlab.models.attention import AttentionMask
    from jaxlab.models.decoder import Attention

    d = heads * hd
    cfg = _model_cfg("llama-1b", True).replace(
        hidden_size=d, num_heads=heads, num_kv_heads=heads, head_dim=hd, attention=path
    )
    graphdef, state = nnx.split(Attention(cfg, heads, heads, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (b, s, d), jnp.bfloat16)
    pos = jnp.broadcast_to(jnp.arange(s), (b, s))
    mask = AttentionMask.causal(s)

    def loss(st, x):
        y, _, _ = nnx.merge(graphdef, st)(x, pos, mask)
        return jnp.sum(y.astype(jnp.float32))

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))
    flops = 3 * (4.0 * b * heads * s * s * hd) + 3 * 8.0 * d * d * b * s
    return _timed({"fb": lambda: jax.block_until_ready(g(state, x))}, flops / 1e12, ctx["repeats"], ctx["max_spread"])[
        "fb"
    ]


def attention(p: dict, ctx: dict) -> dict:
    """Forward + backward of one causal attention layer per path and sequence length, TFLOP/s."""
    heads, hd, b = p["attn_heads"], 128 if not ctx["reduced"] else 16, p["attn_batch"]
    out: dict[str, Any] = {
        "batch": b,
        "heads": heads,
        "head_dim": hd,
        "flops": "modelled: 3 x (4 B H S^2 D) score/value matmuls (full square, not halved "
        "for causality) + 3 x (2 x 4 d^2) per token for q/k/v/o",
    }
    for path in ATTENTION_PATHS:
        why = _attention_available(path)
        if why:
            out[path] = {"status": "skipped", "reason": why}
            continue
        try:
            rows = {}
            for s in p["attn_seqs"]:
                r = _attention_tflops(path, b, s, heads, hd, ctx)
                rows[str(s)] = {"tflops": r, "fraction_of_matmul_ceiling": _frac(r, ctx.get("ceiling"))}
            out[path] = {"status": "ok", "by_seq_len": rows}
        except Exception as e:  # one path failing (a kernel rejecting a shape) must not hide the others
            out[path] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:2000]}
    xla, fast = out["xla"], [k for k in ("cudnn", "splash", "dot_product") if out[k].get("status") == "ok"]
    if xla.get("status") == "ok" and fast:
        s = str(max(p["attn_seqs"]))
        x_r = xla["by_seq_len"][s]["tflops"]
        out["speedup_vs_xla"] = {
            k: (
                out[k]["by_seq_len"][s]["tflops"].value / x_r.value
                if x_r.value and out[k]["by_seq_len"][s]["tflops"].value
                else None
            )
            for k in fast
        }
        out["speedup_at_seq_len"] = int(s)
    return out


def _gmm_inputs(p: dict, dtype=jnp.bfloat16):
    m, k, n, g = p["gmm"]
    lhs = jax.random.normal(jax.random.key(0), (m, k), dtype)
    rhs = jax.random.normal(jax.random.key(1), (g, k, n), dtype)
    grad = jax.random.normal(jax.random.key(2), (m, n), dtype)
    # uneven, random group sizes summing to m (a realistic router outcome, not equal splits)
    cuts = np.sort(np.random.default_rng(0).choice(np.arange(1, m), g - 1, replace=False))
    sizes = jnp.asarray(np.diff(np.concatenate([[0], cuts, [m]])), jnp.int32)
    return lhs, rhs, grad, sizes


def gmm_speed(p: dict, ctx: dict) -> dict:
    """gmm and tgmm on the backend's default path (``impl='auto'``), TFLOP/s vs the matmul ceiling."""
    from pallas_kernels.gmm import gmm, resolve_impl, tgmm

    lhs, rhs, grad, sizes = _gmm_inputs(p)
    m, k, n, _ = p["gmm"]
    f = jax.jit(lambda a, b, s: gmm(a, b, s, preferred_element_type=jnp.float32))
    t = jax.jit(lambda a, d, s: tgmm(a, d, s, preferred_element_type=jnp.float32))
    rates = _timed(
        {
            "gmm": lambda: f(lhs, rhs, sizes).block_until_ready(),
            "tgmm": lambda: t(lhs, grad, sizes).block_until_ready(),
        },
        2.0 * m * k * n / 1e12,
        ctx["repeats"],
        ctx["max_spread"],
    )
    return {
        "impl": resolve_impl("auto"),
        "m_k_n_groups": list(p["gmm"]),
        "flops": "modelled 2 m k n",
        **{
            name: {"tflops": r, "fraction_of_matmul_ceiling": _frac(r, ctx.get("ceiling"))} for name, r in rates.items()
        },
    }


def gmm_check(p: dict, ctx: dict) -> dict:
    """The GPU gmm paths against ``gmm_reference`` on random f32 inputs (Triton interpreted off the GPU)."""
    from pallas_kernels.gmm import gmm, tgmm
    from pallas_kernels.gmm_reference import gmm_reference, tgmm_reference

    lhs, rhs, grad, sizes = _gmm_inputs(p, jnp.float32)
    want, want_t = gmm_reference(lhs, rhs, sizes), tgmm_reference(lhs, grad, sizes)
    scale = float(jnp.max(jnp.abs(want)))
    out = {"tolerance": "max abs error <= 1e-2 x max |reference| (tf32 / bf16 MXU passes on accelerators)"}
    interpret = jax.default_backend() != "gpu"
    for impl in ("triton", "ragged_dot"):
        kw = {"interpret": interpret} if impl == "triton" else {}
        got = gmm(lhs, rhs, sizes, impl=impl, **kw)
        got_t = tgmm(lhs, grad, sizes, impl=impl, **kw)
        err = float(jnp.max(jnp.abs(got - want)))
        err_t = float(jnp.max(jnp.abs(got_t - want_t)))
        out[impl] = {
            "interpret": bool(kw.get("interpret", False)),
            "gmm_max_abs_err": err,
            "tgmm_max_abs_err": err_t,
            "pass": bool(err <= 1e-2 * scale and err_t <= 1e-2 * float(jnp.max(jnp.abs(want_t)))),
        }
    out["all_pass"] = all(out[i]["pass"] for i in ("triton", "ragged_dot"))
    return out


def generate_speed(p: dict, ctx: dict) -> dict:
    """Greedy ``jaxlab.generate`` on the SmolLM2 shape, bf16: new tokens/s over the whole call."""
    from jaxlab.generate import generate
    from jaxlab.models import init_model

    model = init_model(_model_cfg("smollm2-135m", ctx["reduced"]), seed=0)
    rows = np.random.default_rng(0).integers(1, model.config.vocab_size, (p["gen_batch"], p["gen_prompt"])).tolist()
    fn = lambda: generate(model, None, rows, max_new_tokens=p["gen_new"], stop_token_ids=[])  # noqa: E731
    r = _timed({"gen": fn}, p["gen_batch"] * p["gen_new"], ctx["repeats"], ctx["max_spread"])["gen"]
    return {
        "shape": "reduced" if ctx["reduced"] else "smollm2-135m",
        "batch": p["gen_batch"],
        "prompt_len": p["gen_prompt"],
        "new_tokens": p["gen_new"],
        "tokens_per_s": r,
        "note": "new tokens / wall time of the whole call (prefill included); no stop token",
    }


def run_section(fn: Callable[[], dict]) -> dict:
    """``fn()`` with its status: ``ok``, ``skipped`` (:class:`Skip`) or ``failed`` (any other error, traceback kept)."""
    t0 = time.perf_counter()
    try:
        out = {"status": "ok", **fn()}
    except Skip as e:
        out = {"status": "skipped", "reason": str(e)}
    except Exception as e:
        out = {
            "status": "failed",
            "reason": f"{type(e).__name__}: {e}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    out["wall_s"] = time.perf_counter() - t0
    print(f"[suite] {out['status']:7s} {out['wall_s']:6.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_dir", default="runs/accelerator")
    ap.add_argument("--reduced", action="store_true", help="tiny shapes (the CPU test's mode)")
    ap.add_argument("--remat", default="none", help="model.remat of the train steps")
    ap.add_argument("--train_attention", default="auto", help="model.attention of the train steps (auto: fastest here)")
    ap.add_argument("--peak_tflops", type=float, default=None, help="per-device peak for MFU (default: by device kind)")
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS)
    ap.add_argument("--max_spread", type=float, default=DEFAULT_MAX_SPREAD)
    ap.add_argument("--only", default="", help="comma-separated section names to run (default: all)")
    args = ap.parse_args(argv)
    p = REDUCED if args.reduced else FULL
    ctx = {
        "reduced": args.reduced,
        "remat": args.remat,
        "train_attention": train_attention(args.train_attention),
        "peak_tflops": args.peak_tflops,
        "repeats": args.repeats,
        "max_spread": args.max_spread,
    }
    sections: dict[str, Callable[[], dict]] = {
        "matmul": lambda: matmul_ceiling(p, ctx),
        "train_smollm2": lambda: train_step("smollm2-135m", p, ctx),
        "train_1b": lambda: train_step("llama-1b", p, ctx),
        "attention": lambda: attention(p, ctx),
        "gmm": lambda: gmm_speed(p, ctx),
        "gmm_check": lambda: gmm_check(p, ctx),
        "generate": lambda: generate_speed(p, ctx),
    }
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(sections))
    if unknown:
        ap.error(f"--only: unknown sections {unknown}; expected some of {list(sections)}")
    t0 = time.perf_counter()
    dev = jax.devices()[0]
    out: dict[str, Any] = {
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "num_devices": len(jax.devices()),
        "jax": jax.__version__,
        "reduced": args.reduced,
        "params": p,
        "sections": {},
    }
    for name, fn in sections.items():
        if only and name not in only:
            continue
        print(f"[suite] {name} ...", flush=True)
        out["sections"][name] = run_section(fn)
    out["wall_s"] = time.perf_counter() - t0
    write_json(out, Path(args.output_dir) / "accelerator_suite.json")
    return out


if __name__ == "__main__":
    main()
