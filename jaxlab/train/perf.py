"""Train-step performance accounting: compiled memory per device, FLOPs per token, MFU.

Why here and not in a benchmark: every run should say before training how
much device memory its step needs (from the compiled program, not arithmetic)
and, while training, how fast it goes relative to the hardware.

FLOPs are *modelled* (the usual 6 x matmul parameters per token for forward +
backward, plus the attention score/value matmuls ``12 x layers x heads x
head_dim x seq`` as in the PaLM appendix, counted for the full square, not
halved for causality); step time and tokens/s are *measured*. MFU is the
modelled FLOP rate over the devices' peak, which is looked up from the device
kind or given as ``train.peak_tflops_per_device``; with neither (e.g. the
CPU) MFU is not reported rather than guessed.
"""

from __future__ import annotations

from typing import Any

import jax

#: dense bf16 peak TFLOP/s per chip (vendor datasheets), by ``device.device_kind`` substring.
PEAK_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v5": 459.0,
    "TPU v6": 918.0,
}


def memory_report(compiled: Any) -> dict[str, int]:
    """Per-device bytes of a compiled step: arguments, outputs, temporaries and XLA's peak estimate."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    # XLA:CPU's peak_memory_in_bytes leaves the temporaries out (arguments + outputs only), so the peak is
    # at least the sum of live arguments, outputs and temporaries minus donated (aliased) buffers.
    total = (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )
    return {
        "peak_bytes": int(max(stats.peak_memory_in_bytes, total)),
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
    }


def format_memory(report: dict[str, int]) -> str:
    if not report:
        return "memory analysis unavailable on this backend"
    mib = {k: v / 2**20 for k, v in report.items()}
    return (
        f"train step needs {mib['peak_bytes']:.1f} MiB per device at peak (arguments "
        f"{mib['argument_bytes']:.1f}, outputs {mib['output_bytes']:.1f}, temporaries {mib['temp_bytes']:.1f} MiB; "
        f"compiled memory_analysis)"
    )


def train_flops_per_token(cfg: Any, seq_len: int) -> float:
    """Modelled forward+backward FLOPs per trained token of a decoder ``ModelConfig`` (MoE: active experts)."""
    d, hd = cfg.hidden_size, cfg.head_dim
    matmul = d * cfg.vocab_size  # the logits projection (tied or not)
    attention = 0.0
    for i in range(cfg.num_layers):
        heads, kv = cfg.layer_heads[i], cfg.layer_kv_heads[i]
        matmul += d * heads * hd * 2 + d * kv * hd * 2  # q, o and k, v projections
        if cfg.layer_is_moe[i]:
            moe = cfg.moe
            matmul += 3 * d * moe.intermediate_size * moe.num_experts_per_tok + d * moe.num_experts
            matmul += 3 * d * moe.shared_expert_intermediate_size
        else:
            matmul += 3 * d * cfg.layer_intermediate[i]
        window = cfg.layer_window[i]
        attention += 12 * heads * hd * (min(seq_len, window) if window else seq_len)
    return 6.0 * matmul + attention


def peak_flops(override_tflops: float | None = None) -> float | None:
    """Total peak FLOP/s of all devices in the run, or None when unknown."""
    devices = jax.devices()
    if override_tflops is not None:
        return override_tflops * 1e12 * len(devices)
    kind = devices[0].device_kind
    for name, tflops in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return tflops * 1e12 * len(devices)
    return None


def step_record(seconds: float, tokens: float, flops_per_token: float | None, peak: float | None) -> dict:
    """``step_time_s``, ``tokens_per_s`` and (when the peak is known) ``mfu`` for ``tokens`` in ``seconds``."""
    out = {"step_time_s": seconds, "tokens_per_s": tokens / seconds if seconds > 0 else float("nan")}
    if flops_per_token is not None and peak and seconds > 0:
        out["mfu"] = flops_per_token * tokens / seconds / peak
    return out


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``getrusage`` maxrss, and the per-phase high-water
    marks of :mod:`jaxlab.train.memory`, which resets the kernel's counter at each phase)."""
    from jaxlab.train.memory import peak_bytes

    return peak_bytes()


def format_peak_rss() -> str:
    """``peak RSS 3.21 GB (getrusage maxrss)``: what every runner prints at its end."""
    return f"peak RSS {peak_rss_bytes() / 1e9:.2f} GB (getrusage maxrss / VmHWM, whole process)"
