"""``jaxlab run configs/mas_orchestra.yaml``: prompted orchestration on MASBench.

Generates (or loads) MASBench problems, lets the orchestrator design and run a
system for each, scores every boxed answer, and writes the per-trajectory
JSONL, ``results.json`` (accuracy per axis x level, execution rate, reward,
tokens), a printed table and ``accuracy_by_level.png``.

Rerun with the same config, a run skips the problems already in
``trajectories.jsonl`` (those whose model call failed run again, their new
record appended); another config's results there stop it unless
``overwrite=true``. A run in which no model call succeeded raises
:class:`jaxlab.runs.RunFailedError` (``jaxlab run`` exits 1) and writes no table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from experiments.mas_orchestra import report
from experiments.mas_orchestra.orchestrator import run_orchestrated
from experiments.mas_orchestra.reward import orchestration_reward
from experiments.mas_orchestra.spec import dumps
from experiments.mas_orchestra.subagents import Corpus, Runtime, Settings
from experiments.masbench.generator import AXES, MAX_LEVEL, MIN_LEVEL, Problem
from experiments.masbench.generators import GENERATORS, generate_split
from experiments.masbench.loader import PUBLISHED_AXES, load_parquet
from experiments.mas_prove.benchmarks import REAL_MATH, real_math_tasks
from experiments.masbench.scorer import final_answer, math_correct, score
from jaxlab.config import ConfigError
from jaxlab.llm.concurrency import map_progress
from jaxlab.llm.factory import OPERATIONAL_KEYS, ClientConfig, make_client
from jaxlab.llm.types import ChatClient
from jaxlab.runs import JsonlLog, claim_output_dir, fail_if_no_call_succeeded


@dataclass(frozen=True)
class Config:
    runner: str = "experiments.mas_orchestra.runner"
    output_dir: str = "runs/mas_orchestra"
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    client: ClientConfig = field(default_factory=ClientConfig)
    benchmark: str = "masbench"
    """``masbench`` (generated or ``parquet``), or real rows: ``aime24``, ``aime25``, ``math500``, ``gsm8k``."""
    n_tasks: int = 8
    """Rows of a real benchmark (``masbench`` uses ``axes`` x ``levels`` x ``per_level``)."""
    axes: tuple[str, ...] = AXES
    levels: tuple[int, ...] = (2, 4, 8, 12)
    per_level: int = 2
    seed: int = 0
    generator: str = "dag"
    """MASBench generator: ``dag`` (generic word problems) or ``igsm`` (the authors' iGSM style, mod 23)."""
    parquet: str | None = None
    use_tools: bool = False
    subagents: Settings = field(default_factory=Settings)
    """Sub-agent settings; the defaults are the authors' (SC 5 samples, debate/reflexion 5 rounds, T=0.5)."""
    corpus: str | None = None
    """WebSearchAgent's local corpus: a .jsonl (``contents``/``text``) or a folder of .md/.txt; none: no documents."""
    orchestrator_temperature: float = 0.0
    max_tokens: int = 1024
    max_parallel: int = 4
    exec_weight: float = 0.1
    answer_weight: float = 0.9

    def __post_init__(self) -> None:
        bad = [a for a in self.axes if a not in AXES]
        if bad:
            raise ConfigError(f"axes: expected a subset of {list(AXES)}, got {bad}")
        if any(not MIN_LEVEL <= lv <= MAX_LEVEL for lv in self.levels):
            raise ConfigError(f"levels: expected integers in [{MIN_LEVEL}, {MAX_LEVEL}], got {list(self.levels)}")
        if self.per_level < 1:
            raise ConfigError(f"per_level: expected >= 1, got {self.per_level}")
        if self.generator not in GENERATORS:
            raise ConfigError(f"generator: expected one of {list(GENERATORS)}, got {self.generator!r}")
        if self.benchmark != "masbench" and self.benchmark not in REAL_MATH:
            raise ConfigError(f"benchmark: expected 'masbench' or one of {list(REAL_MATH)}, got {self.benchmark!r}")


def _problems(cfg: Config) -> list[Problem]:
    if cfg.benchmark != "masbench":
        return [
            Problem(t.id, cfg.benchmark, 0, t.prompt, t.answers, ())
            for t in real_math_tasks(cfg.benchmark, cfg.n_tasks)
        ]
    if cfg.parquet:
        return [p for p in load_parquet(cfg.parquet) if p.axis in cfg.axes]
    return generate_split(cfg.axes, cfg.levels, cfg.per_level, cfg.seed, cfg.generator)


def _score(text: str, p: Problem) -> dict:
    """MASBench: every box in order; a real single-answer benchmark: the final answer by math-verify."""
    if p.axis in PUBLISHED_AXES:  # MASBench (generated or the published parquet, combine included)
        return score(text, p.answers)
    ok = math_correct(text, p.answers[0])
    return {"correct": ok, "partial": float(ok), "predicted": [final_answer(text) or ""]}


OUTPUTS = ("trajectories.jsonl", "results.json", "accuracy_by_level.png")
RESULT_NEUTRAL = ("max_parallel", *(f"client.{k}" for k in OPERATIONAL_KEYS))
"""Keys a rerun may change and still reuse the records: they change how calls are made, not what they return."""
MODEL_CALL_FAILED = ("orchestrator_call", "execution")
"""Error kinds of a failed model call (a rerun retries them); the others are the model's own scored failures."""


def run(cfg: Config, client: ChatClient | None = None) -> dict:
    """Run the study; ``client`` overrides ``cfg.client`` (tests pass a scripted one)."""
    claim_output_dir(cfg, OUTPUTS, ignore=RESULT_NEUTRAL)
    client = client or make_client(cfg.client)
    out_dir = Path(cfg.output_dir)
    problems = _problems(cfg)
    corpus = Corpus.from_path(cfg.corpus) if cfg.corpus else Corpus(())
    traj = JsonlLog(out_dir / "trajectories.jsonl")
    done = {r["id"]: r for r in traj.existing if r["error_kind"] not in MODEL_CALL_FAILED}

    def solve(p: Problem) -> dict:
        rt = Runtime(client, cfg.subagents, cfg.max_tokens, cfg.seed, p.id, corpus)
        outcome = run_orchestrated(
            p.question, rt, cfg.use_tools, cfg.orchestrator_temperature, max_parallel=cfg.max_parallel
        )
        s = _score(outcome.final, p) if outcome.success else None
        correct = bool(s and s["correct"])
        rec = {
            "id": p.id,
            "axis": p.axis,
            "level": p.level,
            "gold": list(p.answers),
            "success": outcome.success,
            "error_kind": outcome.error_kind,
            "error": outcome.error,
            "correct": correct,
            "partial": s["partial"] if s else 0.0,
            "predicted": s["predicted"] if s else [],
            "reward": orchestration_reward(outcome.success, correct, cfg.exec_weight, cfg.answer_weight),
            "tokens": rt.usage.total_tokens,
            "calls": rt.calls,
            "system": dumps(outcome.spec) if outcome.spec else None,
            "orchestrator_text": outcome.orchestrator_text,
            "agent_inputs": outcome.inputs,
            "agent_outputs": outcome.outputs,
        }
        traj.write(rec)
        return rec

    todo = [p for p in problems if p.id not in done]
    try:
        by_id = {**done, **{r["id"]: r for r in map_progress(solve, todo, cfg.max_parallel, desc="mas_orchestra")}}
    finally:
        traj.close()
    records = [by_id[p.id] for p in problems]
    fail_if_no_call_succeeded(records, lambda r: r["error_kind"], lambda r: r["error"], str(traj.path))
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["axis"]][str(r["level"])].append(r)
        groups[r["axis"]]["all"].append(r)

    def mean(rs: list[dict], key: str) -> float:
        return sum(float(r[key]) for r in rs) / len(rs)

    summary = {
        "model": getattr(client, "model", ""),
        "n_problems": len(records),
        "accuracy": {a: {k: mean(rs, "correct") for k, rs in g.items()} for a, g in groups.items()},
        "partial": {a: {k: mean(rs, "partial") for k, rs in g.items()} for a, g in groups.items()},
        "execution_rate": mean(records, "success"),
        "mean_reward": mean(records, "reward"),
        "tokens_total": sum(r["tokens"] for r in records),
        "reused_records": len(problems) - len(todo),
        "failures": {k: sum(r["error_kind"] == k for r in records) for k in {r["error_kind"] for r in records} if k},
        "output_dir": str(out_dir),
    }
    levels = sorted({r["level"] for r in records})
    print(report.write(out_dir, summary, levels))
    print(
        f"execution rate {100 * summary['execution_rate']:.1f}%  mean reward {summary['mean_reward']:.3f}  "
        f"tokens {summary['tokens_total']}  -> {out_dir}"
    )
    return summary
