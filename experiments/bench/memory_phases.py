"""Peak RSS per phase of the pretrain default and the PTL main job (issue 15: 4 GB on a free Colab).

``python -m experiments.bench.memory_phases --output_dir runs/memory_phases [--jobs pretrain,ptl]``
runs each job as its own process (so one job's heap cannot hide or inflate the other's) with the
shipped config and a few overrides that shorten it without changing its per-step shapes: pretrain
2 steps (the default batch, sequence, eval batches, checkpoint and export); PTL one track (no
baselines), 2 stages x 2 tune steps, 4 held-out batches per corpus of the default 16 windows x 128
tokens, 16 next-line items and one batch of 16 GSM8K rows when ``../shared/data`` has them (the
speed section off). The runners record the phases themselves (:mod:`jaxlab.train.memory`); this
prints one table per job and writes ``memory_phases.json``.

Everything is **measured**: each figure is the kernel's high-water mark of resident memory
(``VmHWM``, reset at each phase start) of the job's process, threads included. ``--code DIR`` runs
the jobs from another checkout (e.g. the main branch, for a before/after pair); a checkout without
the phase recorder reports its whole-process peak only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOBS = {
    "pretrain": ("configs/pretrain_smollm2.yaml", ["train.steps=2", "train.progress=false"], "summary.json"),
    "ptl": (
        "configs/ptl_smollm2.yaml",
        [
            "baselines=[]",
            "schedule.stages=2",
            "tune.steps=2",
            "data.eval_tokens=8192",
            "data.task_items=16",
            "data.gsm8k_rows=16",
            "data.gsm8k_max_new_tokens=32",
            "speed.enabled=false",
            "progress=false",
        ],
        "results.json",
    ),
}


def run_job(name: str, out: Path, code: Path, extra: list[str]) -> dict:
    """Run one job in a fresh process; its phase rows, whole-process peak and wall time."""
    config, overrides, result_file = JOBS[name]
    run_dir = out / name
    cmd = [
        sys.executable,
        "-m",
        "jaxlab.cli",
        "run",
        str(code / config),
        f"output_dir={run_dir}",
        "overwrite=true",
        *overrides,
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / result_file).is_file():
        raise RuntimeError(f"{name}: exited {proc.returncode}; last output:\n{(proc.stdout + proc.stderr)[-3000:]}")
    result = json.loads((run_dir / result_file).read_text())
    return {
        "job": name,
        "command": " ".join(cmd),
        "code": str(code),
        "wall_s": round(wall, 1),
        "peak_rss_bytes": result["peak_rss_bytes"],
        "phases": result.get("memory_phases"),
    }


def format_job(job: dict) -> str:
    head = (
        f"{job['job']}: whole-process peak RSS {job['peak_rss_bytes'] / 1e9:.2f} GB (measured), {job['wall_s']:.0f} s"
    )
    if not job["phases"]:
        return head + "\n  (no per-phase rows: this checkout does not record memory phases)"
    width = max(len(p["phase"]) for p in job["phases"])
    lines = [head, f"  {'phase':<{width}}  peak RSS GB  RSS after GB  seconds  runs"]
    for p in job["phases"]:
        end = "-" if p.get("end_bytes") is None else f"{p['end_bytes'] / 1e9:.2f}"
        lines.append(
            f"  {p['phase']:<{width}}  {p['peak_bytes'] / 1e9:>11.2f}  {end:>12}  {p['seconds']:>7.1f}  {p['count']:>4}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", default="runs/memory_phases")
    ap.add_argument("--jobs", default="pretrain,ptl", help="comma-separated: " + ", ".join(JOBS))
    ap.add_argument("--code", default=str(REPO), help="checkout to run the jobs from (default: this one)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for every job (repeatable)",
    )
    args = ap.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        ap.error(f"--jobs: unknown {unknown}; expected some of {sorted(JOBS)}")
    out = Path(args.output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in jobs:
        job = run_job(name, out, Path(args.code).absolute(), args.set)
        results.append(job)
        print(format_job(job), flush=True)
    report = {
        "measured": "peak RSS: VmHWM of each job's process, reset per phase (jaxlab.train.memory)",
        "goal_bytes": 4e9,
        "jobs": results,
    }
    (out / "memory_phases.json").write_text(json.dumps(report, indent=2))
    for job in results:
        verdict = "meets" if job["peak_rss_bytes"] <= 4e9 else "misses"
        print(f"{job['job']}: {job['peak_rss_bytes'] / 1e9:.2f} GB {verdict} the 4 GB goal (measured)", flush=True)
    print(f"wrote {out / 'memory_phases.json'}", flush=True)
    return report


if __name__ == "__main__":
    main()
