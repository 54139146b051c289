"""``jaxlab run configs/mas_prove.yaml``: process verification across frameworks, settings and seeds.

For every benchmark x framework x setting x seed x task it runs the framework
on a :class:`MASContext` (baseline, or verification at agent / iteration
level with a context strategy), grades the answer, and appends the full
trajectory (every step, every verification, every fallback) to
``trajectories.jsonl``.  ``results.json``, the printed table and
``accuracy.png`` report accuracy mean ± std over seeds and token cost.

Rerun with the same config, a run skips the jobs already in
``trajectories.jsonl`` (jobs whose model call failed run again, their new
record appended); another config's results there stop it unless
``overwrite=true``. A run in which no model call succeeded raises
:class:`jaxlab.runs.RunFailedError` (``jaxlab run`` exits 1) and writes no table.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.mas_prove import report
from experiments.mas_prove.benchmarks import BENCHMARKS, grade, load_tasks
from experiments.masbench.generators import GENERATORS
from experiments.mas_prove.context import STRATEGIES
from experiments.mas_prove.core import LEVELS, MASContext, Meter, derive_seed
from experiments.mas_prove.frameworks import FAMILIES, FRAMEWORKS, make_framework
from experiments.mas_prove.verifiers import ALIASES, KINDS, make_verifier
from jaxlab.config import ConfigError
from jaxlab.llm.concurrency import map_progress
from jaxlab.llm.factory import OPERATIONAL_KEYS, ClientConfig, make_client
from jaxlab.llm.types import ChatClient, LLMError
from jaxlab.runs import JsonlLog, claim_output_dir, fail_if_no_call_succeeded


@dataclass(frozen=True)
class Config:
    runner: str = "experiments.mas_prove.runner"
    output_dir: str = "runs/mas_prove"
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    client: ClientConfig = field(default_factory=ClientConfig)
    verifier_client: ClientConfig | None = None
    frameworks: tuple[str, ...] = ("debate", "dylan", "aflow", "maas", "adas", "mas_zero")
    benchmarks: tuple[str, ...] = ("math", "masbench")
    math_path: str | None = None
    masbench_generator: str = "dag"
    """``masbench`` rows: ``dag`` (generic word problems) or ``igsm`` (the authors' iGSM style)."""
    n_tasks: int = 4
    seeds: tuple[int, ...] = (0, 1)
    verifier: str = "judge_ranking"
    verifier_model: str | None = None
    """A local transformers reward-model folder for ``verifier: orm`` (``*ForSequenceClassification``, e.g.
    Skywork-Reward-V2) or ``prm`` (``Qwen2ForProcessRewardModel``, e.g. Qwen2.5-Math-PRM); None: the verifier
    client emulates the reward model with a prompt."""
    levels: tuple[str, ...] = ("none", "agent", "iteration")
    strategies: tuple[str, ...] = ("raw",)
    n_candidates: int = 3
    temperature: float = 0.7
    max_tokens: int = 1024
    max_parallel: int = 2
    n_validation: int = 0
    """Validation rows (the ones after the ``n_tasks`` test rows) for ADAS's archive search, AFlow's workflow
    optimisation and MaAS's controller training, once per benchmark x seed, without verification; 0: ADAS runs
    its first seed agent, AFlow its default math workflow and MaAS an untrained controller."""
    search_generations: int = 1
    """ADAS generations and AFlow optimisation rounds after round 1."""
    controller_steps: int = 20

    def __post_init__(self) -> None:
        for key, values, allowed in (
            ("frameworks", self.frameworks, FRAMEWORKS),
            ("benchmarks", self.benchmarks, BENCHMARKS),
            ("levels", self.levels, LEVELS),
            ("strategies", self.strategies, STRATEGIES),
        ):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ConfigError(f"{key}: expected a subset of {sorted(allowed)}, got {bad}")
        if self.masbench_generator not in GENERATORS:
            raise ConfigError(
                f"masbench_generator: expected one of {list(GENERATORS)}, got {self.masbench_generator!r}"
            )
        if self.verifier not in KINDS and self.verifier not in ALIASES:
            raise ConfigError(f"verifier: expected one of {list(KINDS) + list(ALIASES)}, got {self.verifier!r}")
        if self.verifier_model is not None and ALIASES.get(self.verifier, self.verifier) not in ("orm", "prm"):
            raise ConfigError(
                f"verifier_model: only verifier orm/rm or prm takes a reward model, got {self.verifier!r}"
            )
        if self.n_candidates < 2 and any(lv != "none" for lv in self.levels):
            raise ConfigError(f"n_candidates: verification needs >= 2 candidates, got {self.n_candidates}")


def settings(cfg: Config) -> list[tuple[str, str]]:
    """(level, strategy) pairs; the baseline has no verifier, so it runs once."""
    out = [("none", "none")] if "none" in cfg.levels else []
    return out + [(lv, st) for lv in cfg.levels if lv != "none" for st in cfg.strategies]


OUTPUTS = ("trajectories.jsonl", "results.json", "accuracy.png")
RESULT_NEUTRAL = ("max_parallel", *(f"{c}.{k}" for c in ("client", "verifier_client") for k in OPERATIONAL_KEYS))
"""Keys a rerun may change and still reuse the records: they change how calls are made, not what they return."""


def _key(rec: dict) -> tuple:
    return rec["benchmark"], rec["task"], rec["framework"], rec["level"], rec["strategy"], rec["seed"]


def _job_key(job: tuple) -> tuple:
    bench, task, *rest = job
    return bench, task.id, *rest


def run(cfg: Config, client: ChatClient | None = None, verifier_client: ChatClient | None = None) -> dict:
    claim_output_dir(cfg, OUTPUTS, ignore=RESULT_NEUTRAL)
    client = client or make_client(cfg.client)
    verifier_client = verifier_client or (make_client(cfg.verifier_client) if cfg.verifier_client else client)
    out_dir = Path(cfg.output_dir)
    jobs = [
        (b, t, f, lv, st, seed)
        for b in cfg.benchmarks
        for t in load_tasks(b, cfg.n_tasks, 0, cfg.math_path, cfg.masbench_generator)
        for f in cfg.frameworks
        for lv, st in settings(cfg)
        for seed in cfg.seeds
    ]
    traj = JsonlLog(out_dir / "trajectories.jsonl")
    done = {_key(r): r for r in traj.existing if not r["error"]}  # same config (claim_output_dir): reuse
    prepared = prepare(cfg, client, {(b, t.id, f, s) for b, t, f, _, _, s in jobs})
    reward_fn = None
    if cfg.verifier_model is not None:
        from experiments.mas_prove.reward_scorers import load_reward_scorer

        reward_fn = load_reward_scorer(ALIASES.get(cfg.verifier, cfg.verifier), cfg.verifier_model)

    def one(job: tuple) -> dict:
        bench, task, fname, level, strategy, seed = job
        meter, vmeter = Meter(), Meter()
        verifier = (
            make_verifier(
                cfg.verifier, verifier_client, vmeter, derive_seed(seed, task.id, fname, "verifier"), reward_fn
            )
            if level != "none"
            else None
        )
        ctx = MASContext(
            client,
            task.prompt,
            verifier,
            level,
            strategy if level != "none" else "raw",
            cfg.n_candidates,
            cfg.temperature,
            cfg.max_tokens,
            seed,
            meter,
            task.id,
            fname,
            vmeter,
            benchmark=bench,
        )
        error = ""
        try:
            answer = prepared.get((bench, fname, seed), make_framework(fname)).solve(ctx)
        except LLMError as exc:  # a dead endpoint is a scored failure for this task, reported per record
            answer, error = "", f"{type(exc).__name__}: {exc}"
        rec = {
            "benchmark": bench,
            "task": task.id,
            "framework": fname,
            "family": FAMILIES[fname],
            "level": level,
            "strategy": strategy,
            "seed": seed,
            "correct": grade(task, answer),
            "answer": answer,
            "error": error,
            "tokens": meter.usage.total_tokens,
            "calls": meter.calls,
            "verifier_tokens": vmeter.usage.total_tokens,
            "verifier_calls": vmeter.calls,
            "stats": dict(ctx.stats),
            "steps": [asdict(s) for s in ctx.steps],
            "verifications": ctx.verifications,
            "trace": ctx.trace,
        }
        traj.write(rec)
        return rec

    todo = [j for j in jobs if _job_key(j) not in done]
    try:
        by_key = {**done, **{_key(r): r for r in map_progress(one, todo, cfg.max_parallel, desc="mas_prove")}}
    finally:
        traj.close()
    records = [by_key[_job_key(j)] for j in jobs]
    fail_if_no_call_succeeded(records, lambda r: r["error"].split(":")[0], lambda r: r["error"], str(traj.path))
    summary = summarize(records, cfg)
    summary["reused_records"] = len(jobs) - len(todo)
    summary["model"] = getattr(client, "model", "")
    print(report.write(out_dir, summary))
    print(f"-> {out_dir}")
    return summary


def prepare(cfg: Config, client: ChatClient, wanted: set[tuple]) -> dict[tuple, object]:
    """ADAS archive search, AFlow workflow optimisation and MaAS controller training on the validation rows, per
    benchmark x seed."""
    out: dict[tuple, object] = {}
    if cfg.n_validation <= 0:
        return out
    for bench in cfg.benchmarks:
        tasks = load_tasks(bench, cfg.n_tasks + cfg.n_validation, 0, cfg.math_path, cfg.masbench_generator)[
            cfg.n_tasks :
        ]
        if not tasks:
            raise ConfigError(f"n_validation: benchmark {bench!r} has no rows after the first {cfg.n_tasks}")
        for fname in ("adas", "aflow", "maas"):
            for seed in cfg.seeds:
                if not any(w[0] == bench and w[2] == fname and w[3] == seed for w in wanted):
                    continue

                def make_ctx(task, tag, seed=seed, bench=bench):
                    return MASContext(
                        client,
                        task.prompt,
                        None,
                        "none",
                        "raw",
                        cfg.n_candidates,
                        cfg.temperature,
                        cfg.max_tokens,
                        seed,
                        Meter(),
                        f"validation:{task.id}",
                        tag,
                        benchmark=bench,
                    )

                fw = make_framework(fname)
                if fname == "adas":
                    fw.generations, fw.benchmark = cfg.search_generations, bench
                    fw.search(make_ctx, tasks, grade, make_ctx(tasks[0], "adas-meta"))
                elif fname == "aflow":
                    fw.generations = cfg.search_generations
                    fw.search(make_ctx, tasks, grade, make_ctx(tasks[0], "aflow-optimizer"), seed=seed)
                else:
                    fw.train(make_ctx, tasks, grade, cfg.controller_steps)
                out[(bench, fname, seed)] = fw
    return out


def summarize(records: list[dict], cfg: Config) -> dict:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["framework"], r["level"], r["strategy"])].append(r)
    rows = []
    for (fname, level, strategy), recs in groups.items():
        acc = {}
        for b in cfg.benchmarks:
            per_seed = [
                statistics.mean(r["correct"] for r in recs if r["benchmark"] == b and r["seed"] == s)
                for s in cfg.seeds
                if any(r["benchmark"] == b and r["seed"] == s for r in recs)
            ]
            if per_seed:
                acc[b] = {
                    "mean": statistics.mean(per_seed),
                    "std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
                    "per_seed": per_seed,
                }
        stats = sum((Counter(r["stats"]) for r in recs), Counter())
        rows.append(
            {
                "framework": fname,
                "family": FAMILIES[fname],
                "level": level,
                "strategy": strategy,
                "setting": "baseline" if level == "none" else f"{level}/{strategy}",
                "acc": acc,
                "tokens_per_task": statistics.mean(r["tokens"] for r in recs),
                "verifier_tokens_per_task": statistics.mean(r.get("verifier_tokens", 0) for r in recs),
                "verifications": stats["verifications"],
                "fallbacks": stats["fallbacks"],
                "errors": sum(bool(r["error"]) for r in recs),
            }
        )
    return {
        "benchmarks": list(cfg.benchmarks),
        "verifier": cfg.verifier,
        "n_candidates": cfg.n_candidates,
        "seeds": list(cfg.seeds),
        "rows": rows,
        "n_records": len(records),
    }
