"""Printed table and goal check for the LLEP bench (``bench.py``); every column says where it comes from.

Markers: [M] measured on this machine (memory_analysis of the compiled program,
or wall-clock through experiments/bench/timing.py), [H] read from the compiled
HLO (collective bytes x trip counts from the plan), [L] modelled (link model).
"share": one device's compiled layer on its static buffers with the project's CPU
gmm (every group over every buffer row); "rows FFN": a jitted JAX FFN over exactly the
plan's rows per slot (what a kernel skipping padding does).  Step = slowest timed
device + communication; speedup = standard step / LLEP step.
"""

from __future__ import annotations

MiB = 2**20
COLUMNS = (
    "D",
    "skew",
    "std peak MiB [M]",
    "LLEP peak MiB [M]",
    "LLEP/std mem [M]",
    "std temp MiB [M]",
    "LLEP temp MiB [M]",
    "std max/mean rows",
    "LLEP max/mean rows",
    "std share ms [M]",
    "LLEP share ms [M]",
    "planner ms [M]",
    "std wire MiB [H]",
    "LLEP wire MiB [H]",
    "std comm ms [L]",
    "LLEP comm ms [L]",
    "speedup [M+L]",
    "std rows FFN ms [M]",
    "LLEP rows FFN ms [M]",
    "rows speedup [M+L]",
)


def _ms(stat: dict) -> str:
    return f"{stat['median'] * 1e3:.1f} [{stat['min'] * 1e3:.1f}-{stat['max'] * 1e3:.1f}]"


def _x(ratio: dict) -> str:
    return f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"


def table_rows(results: list[dict]) -> list[list[str]]:
    out = []
    for r in results:
        s, l = r["standard"], r["llep"]
        sp = r["speedup"]
        out.append(
            [
                str(r["devices"]),
                r["skew"],
                f"{s['memory']['peak'] / MiB:.1f}",
                f"{l['memory']['peak'] / MiB:.1f}",
                f"{r['memory_ratio']:.2f}x",
                f"{s['memory']['temp'] / MiB:.1f}",
                f"{l['memory']['temp'] / MiB:.1f}",
                f"{s['max_load']}/{s['mean_load']:.0f}",
                f"{l['max_load']}/{l['mean_load']:.0f}",
                _ms(s["share_s"]),
                _ms(l["share_s"]),
                _ms(r["planner_s"]),
                f"{s['wire_bytes'] / MiB:.2f}",
                f"{l['wire_bytes'] / MiB:.2f}",
                f"{s['comm_s'] * 1e3:.2f}",
                f"{l['comm_s'] * 1e3:.2f}",
                _x(sp),
                _ms(s["rows_ffn_s"]),
                _ms(l["rows_ffn_s"]),
                _x(r["rows_speedup"]),
            ]
        )
    return out


def markdown(results: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def print_table(results: list[dict], meta: dict) -> None:
    print(__doc__.split("\n\n", 1)[1].strip())
    print(
        f"shape {meta['shape']}, {meta['dtype']}; CPU {meta['cpu_flops']['median'] / 1e9:.1f} GFLOP/s; "
        f"link {meta['link_bytes_per_s'] / 1e9:.3f} GB/s + {meta['latency_s'] * 1e6:.0f} us [L]"
    )
    print(markdown(results))


def goals(results: list[dict]) -> list[tuple[str, bool]]:
    """The issue's goals: LLEP peak <= 0.5x standard at hot:0.9 and <= 1.1x at uniform;
    speedup >= 3x at hot:0.9 on 16+ devices and >= 0.95x at uniform (medians)."""
    out = []
    for r in results:
        d, sk, mem, sp = r["devices"], r["skew"], r["memory_ratio"], r["speedup"]["median"]
        no_drop = r["llep"]["dropped"] == 0
        if sk == "hot:0.9":
            out.append((f"D={d} hot:0.9 memory {mem:.2f}x <= 0.5 (no drops: {no_drop})", mem <= 0.5 and no_drop))
            if d >= 16:
                out.append((f"D={d} hot:0.9 speedup {sp:.2f}x >= 3", sp >= 3.0))
        if sk == "uniform":
            out.append((f"D={d} uniform memory {mem:.2f}x <= 1.1", mem <= 1.1))
            out.append((f"D={d} uniform speedup {sp:.2f}x >= 0.95", sp >= 0.95))
    return out


def summarise_goals(results: list[dict]) -> None:
    for text, ok in goals(results):
        print(f"goal {text}: {'MET' if ok else 'NOT MET'}")


def memory_markdown(sweep: list[dict]) -> str:
    """Compiled per-device memory by tokens per device (compile only; the same at every skew)."""
    cols = (
        "D",
        "tokens/device",
        "std peak MiB [M]",
        "LLEP peak MiB [M]",
        "LLEP/std [M]",
        "std temp MiB [M]",
        "LLEP temp MiB [M]",
        "argument MiB [M]",
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in sweep:
        s, l = r["standard"], r["llep"]
        lines.append(
            f"| {r['devices']} | {r['tokens_per_device']} | {s['peak'] / MiB:.1f} | "
            f"{l['peak'] / MiB:.1f} | {r['memory_ratio']:.2f}x | {s['temp'] / MiB:.1f} | "
            f"{l['temp'] / MiB:.1f} | {s['argument'] / MiB:.1f} |"
        )
    return "\n".join(lines)


def print_memory_table(sweep: list[dict]) -> None:
    if sweep:
        print(memory_markdown(sweep))
