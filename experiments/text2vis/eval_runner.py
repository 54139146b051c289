"""Text2Vis benchmark runner: ``jaxlab run configs/text2vis_eval_smollm2.yaml [key=value ...]``.

A policy model answers each task (greedy by default, batched ``jaxlab.generate`` over the RL-Text2Vis
chat prompt); each reply is parsed (:mod:`~experiments.text2vis.parse`), its chart code executed in the
sandbox with the task's table as ``table.csv`` (:mod:`~experiments.text2vis.execute`), and judged:

* ``judge: programmatic`` (and ``auto`` with a local client): answer match and chart readability /
  correctness (1-5) from :mod:`~experiments.text2vis.programmatic`, no model needed;
* ``judge: llm`` (and ``auto`` with ``client.kind=http``): the text judge and the vision judge through
  the client (``client.model`` for text, ``vision_model`` or ``client.model`` for the chart image),
  with the benchmark's own prompts (:mod:`~experiments.text2vis.benchmark_judges`, the default) or
  the RL-Text2Vis reward's (``judge_prompts: rl_text2vis``).

Then the benchmark metric (:mod:`~experiments.text2vis.metric`): answer accuracy, execution rate,
mean readability, mean correctness, pass rate, overall and per kind.  Writes under ``output_dir``:
``samples.jsonl`` (every reply with its parse, run status and scores; a rerun with the same config
skips the tasks already there), ``charts/<id>.png``, ``results.json``, ``results.md``, ``charts.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from tqdm.auto import tqdm

from experiments.grpo.runner import ModelSection, _load
from experiments.text2vis.execute import execute_chart
from experiments.text2vis.metric import SampleScore, summarize, to_markdown, write_outputs
from experiments.text2vis.parse import parse_output
from experiments.text2vis.tasks import Text2VisTask, build_messages
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.llm import ClientConfig
from jaxlab.llm.factory import OPERATIONAL_KEYS
from jaxlab.runs import JsonlLog, RunFailedError, claim_output_dir

__all__ = ["Config", "Judges", "evaluate", "gold_replies", "load_tasks", "make_judges", "run"]

Generate = Callable[[Sequence[Text2VisTask]], list[str]]


@dataclasses.dataclass(frozen=True)
class DataSection:
    source: Literal["vega", "text2vis"] = "vega"
    """``vega``: the seeded generator (experiments.text2vis.generator); ``text2vis``: published rows at ``path``."""
    split: str = "heldout"
    """vega: ``train`` | ``heldout``; text2vis: ``test1`` | ``test2`` | ``all``."""
    n_tasks: int = 48
    seed: int = 0
    path: str | None = None

    def __post_init__(self) -> None:
        require_positive(**{"data.n_tasks": self.n_tasks})
        allowed = ("train", "heldout") if self.source == "vega" else ("test1", "test2", "all")
        if self.split not in allowed:
            raise ConfigError(f"data.split: expected one of {allowed} for source {self.source!r}, got {self.split!r}")
        if self.source == "text2vis" and not self.path:
            raise ConfigError("data.path: source 'text2vis' needs the published CSV/JSONL file")


@dataclasses.dataclass(frozen=True)
class GenerationSection:
    max_new_tokens: int = 320
    """The gold replies of the held-out vega tasks are 115-233 SmolLM2 tokens."""
    temperature: float = 0.0
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(**{"generation.max_new_tokens": self.max_new_tokens, "generation.batch_size": self.batch_size})
        if self.temperature < 0:
            raise ConfigError(f"generation.temperature: expected >= 0, got {self.temperature}")


@dataclasses.dataclass(frozen=True)
class ExecSection:
    timeout_s: float = 15.0
    memory_mb: int = 1024
    workers: int = 2
    """Sandboxed runs at once (each is one interpreter)."""

    def __post_init__(self) -> None:
        require_positive(**{"execution.workers": self.workers})
        if not self.timeout_s > 0:
            raise ConfigError(f"execution.timeout_s: expected a positive number of seconds, got {self.timeout_s!r}")
        if self.memory_mb < 256:
            raise ConfigError(f"execution.memory_mb: matplotlib needs at least 256, got {self.memory_mb}")


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str = "runs/text2vis_eval_smollm2"
    overwrite: bool = False
    progress: bool = True
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    generation: GenerationSection = GenerationSection()
    execution: ExecSection = ExecSection()
    judge: Literal["auto", "programmatic", "llm"] = "auto"
    """``auto``: LLM judges when ``client.kind`` is ``http``, else the programmatic judges."""
    client: ClientConfig = ClientConfig(kind="local")
    """The judges' endpoint (``kind: http``); a local SmolLM2 cannot see charts, so local means programmatic."""
    vision_model: str | None = None
    judge_prompts: Literal["text2vis", "rl_text2vis"] = "text2vis"
    """LLM judges only: the benchmark's prompts (answer 1/0, charts 0-5 in half steps) or the RL reward's
    (answer + code intent JSON, charts 1-5)."""
    grid_n: int = 12
    parser: Literal["json", "released"] = "json"
    """How a reply's answer and code are read (experiments.text2vis.parse): ``json`` decodes the reply's
    object; ``released`` is the released regex extractor, which cuts JSON-list answers at the first quote."""
    oracle: bool = False
    """Reply with each task's gold answer and gold code instead of running the model: the ceiling of the
    judges and the metric on these tasks (a judge that fails gold charts shows up here)."""

    def __post_init__(self) -> None:
        require_positive(grid_n=self.grid_n)
        if self.judge == "llm" and self.client.kind != "http":
            raise ConfigError("judge: 'llm' needs client.kind=http (a vision endpoint for the chart judge)")

    @property
    def judge_kind(self) -> str:
        if self.judge == "auto":
            return "llm" if self.client.kind == "http" else "programmatic"
        return self.judge


@dataclasses.dataclass
class Judges:
    """The text judge (answer match) and the visual judge (readability, correctness) one run uses."""

    text: Any
    visual: Any
    kind: str

    def stats(self) -> dict[str, dict[str, int]]:
        return {"text": self.text.stats.snapshot(), "visual": self.visual.stats.snapshot()}


def make_judges(cfg: Config, *, client: Any = None) -> Judges:
    """Programmatic judges, or LLM judges over ``client`` (built from ``cfg.client`` when not given)."""
    from experiments.text2vis.judges import LLMTextJudge, LLMVisualJudge, ProgrammaticChartJudge, ProgrammaticTextJudge

    if cfg.judge_kind == "programmatic":
        return Judges(
            ProgrammaticTextJudge(),
            ProgrammaticChartJudge(timeout_s=cfg.execution.timeout_s, memory_mb=cfg.execution.memory_mb),
            "programmatic",
        )
    if client is None:
        from jaxlab.llm import make_client

        client = make_client(cfg.client)
    vision = cfg.vision_model or cfg.client.model
    if cfg.judge_prompts == "text2vis":
        from experiments.text2vis.benchmark_judges import BenchmarkAnswerJudge, BenchmarkChartJudge

        return Judges(
            BenchmarkAnswerJudge(client, model=cfg.client.model), BenchmarkChartJudge(client, model=vision), "llm"
        )
    return Judges(LLMTextJudge(client, model=cfg.client.model), LLMVisualJudge(client, model=vision), "llm")


def load_tasks(data: DataSection) -> list[Text2VisTask]:
    """The first ``n_tasks`` tasks of the configured source and split."""
    if data.source == "vega":
        from experiments.text2vis.generator import make_tasks

        return make_tasks(data.split, data.n_tasks, data.seed)
    from experiments.text2vis.loader import load_text2vis

    tasks = load_text2vis(data.path, None if data.split == "all" else [data.split])
    return tasks[: data.n_tasks]


def _score_one(
    task: Text2VisTask, text: str, judges: Judges, ex: ExecSection, parser: str = "json"
) -> tuple[SampleScore, dict]:
    parsed = parse_output(text, parser)
    run = execute_chart(parsed.code, task.table_csv, timeout_s=ex.timeout_s, memory_mb=ex.memory_mb)
    verdict = judges.text.judge(task, parsed.answer, parsed.code)
    scores = judges.visual.score(task, run) if run.ok else None
    read, corr = (scores.readability, scores.correctness) if scores is not None else (0.0, 0.0)
    sample = SampleScore(
        id=task.id,
        kind=task.kind,
        answer_match=verdict.answer_score == 1,
        executed=run.ok,
        readability=float(read),
        correctness=float(corr),
        question=task.question,
        status=run.status,
        png=run.png,
    )
    record = {
        **sample.row(),
        "gold": task.answer,
        "pred_answer": parsed.answer,
        "format_ok": parsed.format_ok,
        "code_format": parsed.code_format,
        "text_judge_parsed": verdict.parsed,
        "reply": text,
        "stderr": run.stderr[-1000:],
        "table": task.table_name,
        "template": task.template,
    }
    return sample, record


def evaluate(
    tasks: Sequence[Text2VisTask],
    generate: Generate,
    judges: Judges,
    *,
    ex: ExecSection = ExecSection(),
    batch_size: int = 8,
    done: dict[str, tuple[SampleScore, dict]] | None = None,
    on_sample: Callable[[SampleScore, dict], None] | None = None,
    progress: bool = False,
    parser: str = "json",
) -> list[tuple[SampleScore, dict]]:
    """Generate, parse (``parser``), execute and judge every task (``done`` ones are reused); in task order."""
    done = dict(done or {})
    todo = [t for t in tasks if t.id not in done]
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), disable=not progress, desc="text2vis", unit="task")
    try:
        with ThreadPoolExecutor(max_workers=ex.workers) as pool:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                texts = generate(chunk)
                if len(texts) != len(chunk):
                    raise RuntimeError(f"generate: returned {len(texts)} replies for {len(chunk)} tasks")
                for task, result in zip(
                    chunk, pool.map(lambda tt: _score_one(*tt, judges, ex, parser), zip(chunk, texts))
                ):
                    done[task.id] = result
                    if on_sample is not None:
                        on_sample(*result)
                    bar.update(1)
    finally:
        bar.close()
    return [done[t.id] for t in tasks]


def _policy(section: ModelSection, gen: GenerationSection) -> Generate:
    """Batched ``jaxlab.generate`` over the tasks' chat messages (the prompt's last bytes for tiny-llama)."""
    import jax

    from jaxlab.generate import generate

    model, tok, codec = _load(section)  # the GRPO runner's loader: SmolLM2 / a local HF folder / tiny-llama
    calls = [0]

    def prompt(t: Text2VisTask) -> Any:
        if tok is not None:
            return build_messages(t)
        room = model.config.max_position_embeddings - gen.max_new_tokens
        return [b for b in "\n".join(m["content"] for m in build_messages(t)).encode() if b][-max(room, 1) :]

    def run_model(chunk: Sequence[Text2VisTask]) -> list[str]:
        calls[0] += 1
        key = jax.random.fold_in(jax.random.key(gen.seed), calls[0]) if gen.temperature else None
        out = generate(
            model,
            tok,
            [prompt(t) for t in chunk],
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            key=key,
            stop_token_ids=None if tok is not None else [codec.eos_id],
        )
        return list(out.texts) if tok is not None else [codec.decode(ids) for ids in out.token_ids]

    return run_model


def gold_replies(chunk: Sequence[Text2VisTask]) -> list[str]:
    """The reply a perfect model would give: the gold answer and gold code as the prompt's JSON."""
    return [json.dumps({"answer": t.answer, "code": t.gold_code}) for t in chunk]


OUTPUTS = ("samples.jsonl", "charts", "results.json", "results.md", "charts.png")
NOT_RESULTS = (
    "progress",
    "grid_n",
    "execution.workers",
    "generation.batch_size",
    *(f"client.{k}" for k in OPERATIONAL_KEYS),
)


def _fail_if_judges_never_answered(judges: Judges) -> None:
    if judges.kind != "llm":
        return
    for name, stats in judges.stats().items():
        if stats.get("calls") and stats.get("call_errors", 0) >= stats["calls"]:
            raise RunFailedError(f"every {name} judge call failed ({stats['calls']} calls); no results were written")


def run(cfg: Config, *, generate_fn: Generate | None = None, judge_client: Any = None) -> dict:
    """The benchmark run; ``generate_fn`` / ``judge_client`` replace the model / judge endpoint in tests."""
    out = Path(cfg.output_dir)
    resumed = claim_output_dir(cfg, OUTPUTS, ignore=NOT_RESULTS)
    t0 = time.time()
    tasks = load_tasks(cfg.data)
    judges = make_judges(cfg, client=judge_client)
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    log = JsonlLog(out / "samples.jsonl")
    by_id = {t.id: t for t in tasks}
    done: dict[str, tuple[SampleScore, dict]] = {}
    for rec in log.existing if resumed else []:
        png = charts / f"{rec['id']}.png"
        fields = {
            k: rec[k]
            for k in ("id", "kind", "answer_match", "executed", "readability", "correctness", "question", "status")
        }
        if rec["id"] in by_id:
            done[rec["id"]] = (SampleScore(**fields, png=png.read_bytes() if png.exists() else None), rec)

    def save(sample: SampleScore, record: dict) -> None:
        if sample.png:
            (charts / f"{sample.id}.png").write_bytes(sample.png)
        log.write(record)

    generate = generate_fn or (gold_replies if cfg.oracle else _policy(cfg.model, cfg.generation))
    t_gen = time.time()
    try:
        results = evaluate(
            tasks,
            generate,
            judges,
            ex=cfg.execution,
            batch_size=cfg.generation.batch_size,
            done=done,
            on_sample=save,
            progress=cfg.progress,
            parser=cfg.parser,
        )
    finally:
        log.close()
    _fail_if_judges_never_answered(judges)
    samples = [s for s, _ in results]
    records = [r for _, r in results]
    extra = {
        "judge": judges.kind,
        "model": "oracle (gold replies)" if cfg.oracle else cfg.model.path or cfg.model.name,
        "data": to_dict(cfg.data),
        "format_rate": sum(r["format_ok"] for r in records) / len(records),
        "parsed_code_rate": sum(r["code_format"] is not None for r in records) / len(records),
        "status_counts": {s: sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records})},
        "judge_stats": judges.stats(),
        "resumed_samples": len(done),
        "seconds": time.time() - t0,
        "seconds_eval": time.time() - t_gen,
        "config": to_dict(cfg),
    }
    write_outputs(samples, out, extra=extra, grid_n=cfg.grid_n)
    summary = summarize(samples)
    print(to_markdown(summary))
    print(json.dumps({"format_rate": extra["format_rate"], **summary["overall"]}, indent=2))
    return {**extra, **summary}
