"""Printed table, goal check and plot for the LLEP benchmark results."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXTREME = "hot:0.9"


def print_table(results: list[dict]) -> None:
    head = (f"{'shape':<13}{'D':>4} {'skew':<9}{'std max/mean':>14}{'llep max/mean':>15}"
            f"{'std peakMB':>11}{'llep peakMB':>12}{'std movedMB':>12}{'llep movedMB':>13}"
            f"{'std ms':>9}{'llep ms':>9}{'speedup':>8}{'mem':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        s, l = r["standard"], r["llep"]
        print(f"{r['shape']:<13}{r['devices']:>4} {r['skew']:<9}"
              f"{s['max_tokens']:>7}/{s['mean_tokens']:<6.0f}{l['max_tokens']:>8}/{l['mean_tokens']:<6.0f}"
              f"{s['peak_bytes'] / 2**20:>11.0f}{l['peak_bytes'] / 2**20:>12.0f}"
              f"{s['bytes_moved'] / 2**20:>12.1f}{l['bytes_moved'] / 2**20:>13.1f}"
              f"{s['step_s'] * 1e3:>9.1f}{l['step_s'] * 1e3:>9.1f}"
              f"{r['speedup']:>7.2f}x{r['memory_ratio']:>5.2f}x")


def summarise_goals(results: list[dict]) -> None:
    """Goal: >= 3x faster and >= 2x lower peak memory at extreme skew, >= 0.95x at uniform."""
    for r in results:
        if r["skew"] == EXTREME:
            ok = r["speedup"] >= 3.0 and r["memory_ratio"] >= 2.0
            print(f"goal {r['shape']} D={r['devices']} {EXTREME}: speedup {r['speedup']:.2f}x (>=3), "
                  f"memory {r['memory_ratio']:.2f}x (>=2): {'MET' if ok else 'NOT MET'}")
        if r["skew"] == "uniform":
            ok = r["speedup"] >= 0.95
            print(f"goal {r['shape']} D={r['devices']} uniform: speedup {r['speedup']:.2f}x (>=0.95): "
                  f"{'MET' if ok else 'NOT MET'}")


def save_plot(results: list[dict], path: str) -> None:
    """Speedup (and peak-memory ratio) of LLEP over standard EP against skew, one line per shape/D."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    series: dict[tuple, list] = {}
    for r in results:
        series.setdefault((r["shape"], r["devices"]), []).append(r)
    for (shape, devices), rows in series.items():
        skews = [r["skew"] for r in rows]
        axes[0].plot(skews, [r["speedup"] for r in rows], marker="o", label=f"{shape} D={devices}")
        axes[1].plot(skews, [r["memory_ratio"] for r in rows], marker="o", label=f"{shape} D={devices}")
    for ax, title, goal in ((axes[0], "step-time speedup (standard / LLEP)", 3.0),
                            (axes[1], "peak-memory ratio (standard / LLEP)", 2.0)):
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(goal, color="red", lw=0.8, ls="--")
        ax.set_title(title)
        ax.set_xlabel("routing skew")
        ax.tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
