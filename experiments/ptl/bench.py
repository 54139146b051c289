"""Evidence: PTL vs one-shot (same total tuning tokens) vs no-tune on SmolLM2-135M.

    python -m experiments.ptl.bench [--settings mlp30 mlp50 layers25] [key=value ...]

Each setting is one run of the PTL runner from ``configs/ptl_smollm2.yaml`` with
the schedule changed (overrides after the settings apply to all of them); runs
resume from their per-stage checkpoints, so an interrupted bench picks up where
it stopped. Prints and writes (``runs/ptl_bench/bench.{json,md}``) the final
held-out perplexities of each track side by side, with the ratio to one-shot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from experiments.ptl import runner
from jaxlab.config import load

SETTINGS = {
    "mlp30": ["schedule.unit=mlp", "schedule.target=0.3", "schedule.criterion=ptl"],
    "mlp50": ["schedule.unit=mlp", "schedule.target=0.5", "schedule.criterion=ptl"],
    "layers25": ["schedule.unit=layers", "schedule.target=0.25", "schedule.criterion=block_influence"],
}


def final_rows(summary: dict) -> dict[str, dict]:
    """The last row of each track (base included)."""
    out: dict[str, dict] = {}
    for r in summary["rows"]:
        out[r["track"]] = r
    return out


def format_bench(results: dict[str, dict]) -> str:
    lines = [
        "| setting | params | track | code ppl | text ppl | task acc | tuning tokens |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in results.items():
        rows = res["final"]
        for track in ("base", "ptl", "one_shot", "no_tune"):
            if track not in rows:
                continue
            r = rows[track]
            lines.append(
                f"| {name} | {r['params'] / 1e6:.1f}M | {track} | {r['code_ppl']:.2f} | {r['text_ppl']:.2f} | "
                f"{r['accuracy']:.3f} | {r['tokens']} |"
            )
        if "ptl" in rows and "one_shot" in rows:
            lines.append(
                f"| {name} | | PTL / one-shot | {rows['ptl']['code_ppl'] / rows['one_shot']['code_ppl']:.2f}x | "
                f"{rows['ptl']['text_ppl'] / rows['one_shot']['text_ppl']:.2f}x | | |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--config", default="configs/ptl_smollm2.yaml")
    parser.add_argument("--out", default="runs/ptl_bench")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every setting, e.g. tune.steps=4")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.settings:
        t = time.time()
        data = yaml.safe_load(Path(args.config).read_text())
        data.pop("runner", None)
        data["output_dir"] = str(out / name)
        data["export_hf"] = False
        cfg = load(runner.Config, None, SETTINGS[name] + list(args.overrides), data=data)
        summary = runner.run(cfg)
        results[name] = {
            "overrides": SETTINGS[name] + list(args.overrides),
            "final": final_rows(summary),
            "wall_time_s": round(time.time() - t, 1),
        }
        (out / "bench.json").write_text(json.dumps(results, indent=2, default=float))
    table = format_bench(results)
    (out / "bench.md").write_text(table + "\n")
    print("\n" + table)
    return results


if __name__ == "__main__":
    main()
