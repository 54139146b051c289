"""Measured speed of the compacted model against the dense one: prefill and decode tokens/s, FLOPs/token.

Why: the first question about a pruned model is what it buys at inference. Removing 30% of the MLP
neurons removes ~20% of a small model's matmul FLOPs, but whether that shows up as tokens/s depends on
the device and on how much of the time is the (unpruned) embedding, attention and framework overhead,
so it is measured, not assumed. Timing goes through ``experiments.bench.timing`` (the shared helper):
dense and compacted model timed round-robin in the same process, each figure the median of
``speed.repeats`` rounds after a warm-up with min and max, a figure whose spread exceeds
``speed.max_spread`` flagged noisy and given no speedup. Prefill = one forward over
``batch x prompt_len`` tokens; decode = the per-step slope of greedy generation time over
``decode_lengths`` (the prefill cancels). FLOPs/token is *modelled* (2 x matmul parameters,
``experiments.bench.model_throughput.model_flops_per_token``); the tokens/s are *measured*.

Standalone, on SmolLM2 at a config's final prune ratio, from one quick scoring pass (no tuning, which
does not change the shapes and so not the speed):

    flock /tmp/heavy.lock python -m experiments.ptl.speed configs/ptl_smollm2.yaml --output_dir runs/ptl_speed
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.bench.model_throughput import jaxlab_fns, measure, model_flops_per_token
from experiments.bench.timing import DEFAULT_MAX_SPREAD, MIN_REPEATS, fmt, fmt_ratio, ratio, time_interleaved
from jaxlab.transforms import param_count


@dataclasses.dataclass(frozen=True)
class SpeedSection:
    """The ``speed`` section of a PTL run: time the exported (compacted) model against the dense one."""

    enabled: bool = True
    """Off for tests and smoke runs; on by default (a few seconds on CPU for SmolLM2-135M)."""
    batch: int = 1
    prompt_len: int = 64
    decode_lengths: tuple[int, ...] = (8, 16, 24)
    """Generation lengths for the per-step decode fit (>= 3 distinct)."""
    repeats: int = MIN_REPEATS
    max_spread: float = DEFAULT_MAX_SPREAD
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch", "prompt_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.repeats < MIN_REPEATS:
            raise ValueError(
                f"repeats: expected >= {MIN_REPEATS} (a median of fewer is not a figure), got {self.repeats}"
            )
        if len(set(self.decode_lengths)) < 3 or min(self.decode_lengths) < 1:
            raise ValueError(
                f"decode_lengths: expected >= 3 distinct positive lengths, got {list(self.decode_lengths)}"
            )
        if self.max_spread <= 0:
            raise ValueError(f"max_spread: expected > 0, got {self.max_spread!r}")

    @property
    def positions(self) -> int:
        """Positions the longest timed generation needs."""
        return self.prompt_len + max(self.decode_lengths)


def measure_speed(dense: Any, small: Any, cfg: SpeedSection) -> dict:
    """Prefill / decode tokens/s (measured) and FLOPs/token (modelled) of ``dense`` and ``small`` (compacted)."""
    rng = np.random.default_rng(cfg.seed)
    vocab = dense.config.vocab_size
    prompts = rng.integers(min(100, vocab - 1), vocab, (cfg.batch, cfg.prompt_len)).astype(np.int64)
    lengths = list(cfg.decode_lengths)
    models = {"dense": dense, "compact": small}
    fns = {f"{name}/{k}": f for name, m in models.items() for k, f in jaxlab_fns(m, prompts, lengths).items()}
    load_before = os.getloadavg()
    samples = time_interleaved(fns, repeats=cfg.repeats)
    load_after = os.getloadavg()
    out: dict = {
        "setting": {**dataclasses.asdict(cfg), "decode_lengths": lengths},
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    rates = {}
    for name, m in models.items():
        rates[name] = measure(samples, name, cfg.batch, cfg.prompt_len, lengths, cfg.max_spread)
        out[name] = {
            "prefill_tok_s": rates[name]["prefill"].as_dict(),
            "decode_tok_s": rates[name]["decode"].as_dict(),
            "flops_per_token": model_flops_per_token(m.config),
            "params": param_count(m.config),
        }
    out["prefill_speedup"] = ratio(rates["compact"]["prefill"], rates["dense"]["prefill"])
    out["decode_speedup"] = ratio(rates["compact"]["decode"], rates["dense"]["decode"])
    out["flops_ratio"] = out["compact"]["flops_per_token"] / out["dense"]["flops_per_token"]
    out["samples_s"] = samples
    out["_rates"] = rates  # for format_speed; dropped from JSON
    return out


def format_speed(speed: dict) -> str:
    """Markdown table of :func:`measure_speed` (which columns are measured and which modelled is in the header)."""
    s, rates = speed["setting"], speed["_rates"]
    lines = [
        f"Speed (measured tok/s: median [min-max] of {s['repeats']} interleaved rounds, noisy = spread > "
        f"{s['max_spread']:.0%}; FLOPs/token modelled) on {speed['device']}, batch {s['batch']}, prompt "
        f"{s['prompt_len']}, decode lengths {s['decode_lengths']}, load {speed['load_before'][0]} -> "
        f"{speed['load_after'][0]}",
        "",
        "| model | params | GFLOPs/token (modelled) | prefill tok/s | decode tok/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("dense", "compact"):
        m = speed[name]
        lines.append(
            f"| {name} | {m['params'] / 1e6:.2f}M | {m['flops_per_token'] / 1e9:.4f} | "
            f"{fmt(rates[name]['prefill'])} | {fmt(rates[name]['decode'], 1)} |"
        )
    lines.append(
        f"| compact / dense | {speed['compact']['params'] / speed['dense']['params']:.3f}x | "
        f"{speed['flops_ratio']:.3f}x | {fmt_ratio(speed['prefill_speedup'])} | "
        f"{fmt_ratio(speed['decode_speedup'])} |"
    )
    return "\n".join(lines)


def jsonable(speed: dict) -> dict:
    return {k: v for k, v in speed.items() if k != "_rates"}


def main(argv: list[str] | None = None) -> dict:
    """Compact SmolLM2 (or the config's model) to the config's final ratio from one scoring pass; time it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--output_dir", default="runs/ptl_speed")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args(argv)  # key=value overrides may follow --output_dir
    from experiments.ptl import runner
    from jaxlab.cli import load_run_config
    from jaxlab.transforms import compact, full_masks, kept, prune_lowest, unit_scores

    _, cfg = load_run_config(args.config, [f"output_dir={args.output_dir}", *args.overrides])
    mcfg, kept_after = runner._check(cfg)
    tokenizer, encode, eos = runner.load_encoder(cfg.model)
    data = runner.build_data(cfg, encode, eos, 1, tokenizer)
    model, *_ = runner.load_model(cfg.model)
    s = cfg.schedule
    masks = full_masks(mcfg)
    now = kept(masks, s.unit)
    n = (min(now) if isinstance(now, list) else now) - kept_after[-1]
    task, english = data.calibration(cfg, encode, eos, 1)
    scores = unit_scores(
        model,
        s.unit,
        s.criterion,
        task,
        masks=masks,
        english=english,
        top_frac=s.top_frac,
        signed=s.ptl_signed,
        select=s.ptl_select,
        n_remove=n,
        seed=cfg.model.seed,
    )
    small = compact(model, prune_lowest(masks, s.unit, scores, n))
    speed = measure_speed(model, small, cfg.speed)
    table = format_speed(speed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(
        json.dumps(
            {"config": args.config, "overrides": args.overrides, "kept": kept_after[-1], **jsonable(speed)}, indent=2
        )
    )
    (out / "speed.md").write_text(table + "\n")
    print(table, flush=True)
    return speed


if __name__ == "__main__":
    main()
