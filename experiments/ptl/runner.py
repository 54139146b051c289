"""PTL runner: compress a model by prune-tune stages and compare with one-shot baselines.

``jaxlab run configs/ptl_smollm2.yaml [key=value ...]``. The schedule is
validated against the model's config before any weights or data are loaded.
Then, on the same calibration data, evaluation sets and tuning data stream:

``ptl``       ``schedule.stages`` stages of score -> prune -> tune (``tune.steps`` each) -> evaluate
``one_shot``  prune straight to the target, tune with the same total budget (stages x steps)
``no_tune``   prune straight to the target, no tuning (the one-shot model before its tune)
``random``    prune straight to the target at random (same count per layer), tune like ``one_shot``

Writes under ``output_dir``: ``results.json`` (every row + config + timings),
``results.md`` (the table), ``ptl_vs_oneshot.png`` (quality vs parameters),
``hf_model/`` (the compacted PTL model, loadable by transformers) and
``<track>/checkpoints`` (per-stage orbax checkpoints for resuming) and ``run.json`` (the config and
its fingerprint: a rerun with the same config resumes, another config's results stop the run before
the model loads, unless ``overwrite=true``; see ``jaxlab.runs.claim_output_dir``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from experiments.ptl import corpora, generation
from experiments.ptl.evaluate import evaluate_stage
from experiments.ptl.loop import pruned_indices, run_track
from experiments.ptl.report import compare, format_comparisons, format_table, plot_quality, write_json
from experiments.ptl.schedule import ScheduleConfig, plan
from experiments.ptl.speed import SpeedSection, format_speed, jsonable, measure_speed
from experiments.ptl.tune import TrainerTuner, TuneConfig, budget_for, load_rl_hook
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.models.config import ModelConfig, tiny_config
from jaxlab.distributed import DistributedConfig
from jaxlab.runs import claim_output_dir
from jaxlab.sharding import MeshConfig
from jaxlab.train import data as train_data
from jaxlab.train import memory
from jaxlab.train.run_setup import refuse_multiprocess
from jaxlab.train.perf import format_peak_rss, peak_rss_bytes
from jaxlab.transforms import compact, full_masks, param_count

ModelName = Literal["smollm2-135m-instruct", "tiny-llama", "tiny-qwen2", "tiny-qwen3"]


@dataclasses.dataclass(frozen=True)
class ModelSection:
    name: ModelName = "smollm2-135m-instruct"
    """``tiny-*``: a random 3-layer model with a byte tokenizer (tests, smoke runs)."""
    path: str | None = None
    """A local Hugging Face folder (config.json, safetensors, tokenizer) to prune instead of ``name``."""
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DataSection:
    root: str | None = None
    """Code corpus directory (default: this interpreter's stdlib)."""
    heldout_fraction: float = 0.05
    seq_len: int = 128
    batch_size: int = 4
    """Sequences per tuning step (tokens per step = batch_size * seq_len)."""
    calib_batches: int = 2
    """Code calibration batches; their rows are the seed's task samples."""
    english_batches: int = 2
    """General-text batches whose strongly active neurons the ``ptl`` criterion protects."""
    eval_tokens: int = 50_000
    """Held-out tokens per corpus (code, English) for perplexity: ``ceil(eval_tokens / seq_len)`` windows."""
    eval_batch_size: int = 16
    """Windows per evaluation forward pass."""
    eval_stages: Literal["all", "final"] = "all"
    """``final``: evaluate only each track's last stage (and the base model); intermediate stages get no metrics."""
    max_overlap: float = 0.2
    """A held-out code file sharing more than this fraction of its 4-line shingles with training files is dropped."""
    fresh_calib: bool = True
    """Draw new calibration samples (task and English) for every stage, as the seed does; false: stage 1's for all."""
    task_items: int = 24
    """Next-line multiple-choice items (0 disables the accuracy column)."""
    task_context: int = 96
    gsm8k_rows: int = 0
    """Greedy GSM8K accuracy on this many real rows of ``../shared/data`` (0: off; data absent: skipped)."""
    gsm8k_max_new_tokens: int = 256
    gsm8k_batch_size: int = 16
    gsm8k_prompt_width: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(
            **{
                n: getattr(self, n)
                for n in (
                    "seq_len",
                    "batch_size",
                    "calib_batches",
                    "english_batches",
                    "eval_tokens",
                    "eval_batch_size",
                    "task_context",
                    "gsm8k_max_new_tokens",
                    "gsm8k_batch_size",
                    "gsm8k_prompt_width",
                )
            }
        )
        if self.task_items < 0:
            raise ValueError(f"task_items: expected >= 0, got {self.task_items!r}")
        if self.gsm8k_rows < 0:
            raise ValueError(f"gsm8k_rows: expected >= 0, got {self.gsm8k_rows!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {self.heldout_fraction!r}")
        if not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"max_overlap: expected a fraction in [0, 1), got {self.max_overlap!r}")

    @property
    def eval_windows(self) -> int:
        return -(-self.eval_tokens // self.seq_len)


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    schedule: ScheduleConfig = ScheduleConfig()
    tune: TuneConfig = TuneConfig()
    baselines: tuple[Literal["one_shot", "no_tune", "random"], ...] = ("one_shot", "no_tune", "random")
    mesh: MeshConfig | None = None
    """Device mesh (``data`` / ``fsdp`` / ``tensor`` as in the pretrain runner): the model is placed on it
    once after loading; tuning steps, scoring and evaluation then run on the sharded weights. ``None``:
    the default device."""
    distributed: DistributedConfig | None = None
    """Accepted so every runner reads the same keys; more than one process is refused (see ``run``)."""
    speed: SpeedSection = SpeedSection()
    """Time the compacted PTL model against the dense one (prefill / decode tok/s, FLOPs/token) into
    ``results.json`` / ``results.md``; ``speed.enabled: false`` skips it (tests)."""
    export_hf: bool = True
    """Compact the final PTL model and write it with ``to_hf`` to ``output_dir/hf_model``."""
    progress: bool = True
    compile_cache: bool = True
    """Use JAX's persistent compilation cache (under the jaxlab cache): each stage's ``fit`` re-jits the
    same train step, and on a CPU recompiling it would cost more than the stage's tuning."""

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir: expected a non-empty path")


def model_config(section: ModelSection) -> ModelConfig:
    """The architecture alone (no weights), so the schedule can be checked before loading anything."""
    if section.name.startswith("tiny-") and section.path is None:
        return tiny_config(section.name[5:], num_layers=4, intermediate_size=96, max_position_embeddings=512)
    from jaxlab.models.pretrained import pretrained_config

    return pretrained_config(section.path or section.name)


def load_encoder(section: ModelSection) -> tuple[Any, corpora.Encode, int]:
    """``(tokenizer or None, encode, eos_id)`` without loading any weights."""
    if section.name.startswith("tiny-") and section.path is None:
        encode, eos = corpora.byte_encoder()
        return None, encode, eos
    from jaxlab.models.pretrained import load_pretrained_tokenizer

    tok = load_pretrained_tokenizer(section.path or section.name)
    encode, eos = corpora.hf_encoder(tok)
    return tok, encode, eos


def load_model(section: ModelSection) -> tuple[Any, Any, corpora.Encode, int]:
    """``(model, tokenizer or None, encode, eos_id)``."""
    if section.name.startswith("tiny-") and section.path is None:
        from jaxlab.models import init_model

        encode, eos = corpora.byte_encoder()
        return init_model(model_config(section), section.seed), None, encode, eos
    from jaxlab.models.pretrained import load_pretrained

    model, tok = load_pretrained(section.path or section.name)
    encode, eos = corpora.hf_encoder(tok)
    return model, tok, encode, eos


@dataclasses.dataclass
class Data:
    """Every fixed data set of a run, built (and size-checked) before the model loads."""

    split: corpora.CodeSplit
    code_eval: list[dict]
    text_eval: list[dict]
    items: list
    gsm8k: list
    gsm8k_prompts: list
    calib_docs: tuple[list[str], list[str]]
    """(code units of training files, paragraphs of the English calibration topics)."""

    def calibration(self, cfg: "Config", encode: corpora.Encode, eos: int, stage: int) -> tuple[list, list]:
        """(task samples, English samples) for ``stage`` (1-based): fresh per stage unless ``data.fresh_calib``
        is false. Stage 1's samples are the same in every track."""
        d = cfg.data
        draw = stage if d.fresh_calib else 1
        seed = d.seed + 1 + 1000 * (draw - 1)
        code, english = self.calib_docs
        return (
            corpora.sample_batches(
                code, encode, eos, d.seq_len, d.calib_batches, d.batch_size, "code calibration", seed
            ),
            corpora.sample_batches(
                english, encode, eos, d.seq_len, d.english_batches, d.batch_size, "English calibration", seed + 500
            ),
        )


def build_data(cfg: "Config", encode: corpora.Encode, eos: int, stages: int, tokenizer: Any = None) -> Data:
    """Build the held-out sets and check every calibration draw; errors name the data key."""
    d = cfg.data
    try:
        split = corpora.code_splits(d.root, d.heldout_fraction, d.max_overlap)
        eng_calib, eng_held = corpora.english_topics()
        code_eval = corpora.eval_windows(
            corpora.file_docs(split.heldout, encode, d.seed),
            eos,
            d.seq_len,
            d.eval_windows,
            d.eval_batch_size,
            "held-out code",
        )
        text_eval = corpora.eval_windows(
            (list(encode(t)) for t in eng_held), eos, d.seq_len, d.eval_windows, d.eval_batch_size, "held-out English"
        )
        items = corpora.next_line_items(split.heldout, encode, d.task_items, d.task_context, d.seed)
        gsm8k = generation.gsm8k_tasks(d.gsm8k_rows)
        prompts = generation.encode_prompts(gsm8k, tokenizer, encode, d.gsm8k_prompt_width) if gsm8k else []
        code_docs = [
            u for f in split.train for u in corpora.code_units(f.read_text(encoding="utf-8", errors="replace"))
        ]
        eng_docs = [p for t in eng_calib for p in corpora.paragraphs(t)]
        data = Data(split, code_eval, text_eval, items, gsm8k, prompts, (code_docs, eng_docs))
        for stage in range(1, (stages if d.fresh_calib else 1) + 1):
            data.calibration(cfg, encode, eos, stage)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return data


def _check(cfg: Config) -> tuple[ModelConfig, list[int]]:
    """Everything that can fail on the config alone, before any work."""
    mcfg = model_config(cfg.model)
    try:
        kept_after = plan(cfg.schedule, mcfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if cfg.tune.method == "rl":
        try:
            load_rl_hook(cfg.tune.rl_hook)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if cfg.data.seq_len + 1 > mcfg.max_position_embeddings:
        raise ConfigError(
            f"data.seq_len: {cfg.data.seq_len} exceeds the model's {mcfg.max_position_embeddings} positions"
        )
    if cfg.speed.enabled and cfg.speed.positions > mcfg.max_position_embeddings:
        raise ConfigError(
            f"speed.prompt_len: {cfg.speed.prompt_len} + the longest of speed.decode_lengths exceeds the "
            f"model's {mcfg.max_position_embeddings} positions"
        )
    return mcfg, kept_after


def _mesh(cfg: Config) -> Any:
    """The run's device mesh (``None`` without a ``mesh`` section); too few devices fail naming ``mesh``."""
    if cfg.mesh is None:
        return None
    from jaxlab.sharding import make_mesh

    try:
        return make_mesh(cfg.mesh)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def place_model(model: Any, mesh: Any) -> Any:
    """``model`` with its params and other state sharded over ``mesh`` by their logical axes."""
    if mesh is None:
        return model
    from flax import nnx

    from jaxlab.sharding import shard_state
    from jaxlab.train.step import split_model

    graphdef, params, rest = split_model(model)
    return nnx.merge(graphdef, shard_state(params, mesh), shard_state(rest, mesh))


def _tuner(
    cfg: Config, train_files, tokenizer, encode, eos, mesh=None, ckpt_root: Path | None = None, teacher: Any = None
):
    """A fresh tuner (and data stream from the start) for one track; ``teacher``: the unpruned model."""
    if cfg.tune.method == "none":
        return None
    if cfg.tune.method == "rl":
        return load_rl_hook(cfg.tune.rl_hook)(cfg, tokenizer=tokenizer, encode=encode, eos=eos)
    d = cfg.data
    if cfg.tune.method == "sft":
        if tokenizer is None:
            raise ConfigError("tune.method: 'sft' needs a model with a chat tokenizer (not a tiny byte model)")
        ds = train_data.chat_sft_dataset(
            cfg.tune.sft_data, tokenizer, seq_len=d.seq_len, batch_size=d.batch_size, seed=d.seed, truncate=True
        )
    else:
        ds = train_data.pretrain_dataset(
            train_files, encode, eos_id=eos, seq_len=d.seq_len, batch_size=d.batch_size, seed=d.seed
        )
    # run_track hands each stage's tuner a copy of the params it owns, so the tuner may donate it
    return TrainerTuner(
        iter(ds), cfg.tune, progress=cfg.progress, mesh=mesh, ckpt_root=ckpt_root, teacher=teacher, donate=True
    )


OUTPUTS = (
    "config.yaml",
    "results.json",
    "results.md",
    "ptl_vs_oneshot.png",
    "hf_model",
    "ptl",
    "one_shot",
    "no_tune",
    "random",
)


def run(cfg: Config) -> dict:
    """Run PTL and the baselines per ``cfg``; print the table, write JSON/PNG/HF export; return the summary."""
    refuse_multiprocess(
        cfg, "PTL", "neuron scoring, compaction and the per-stage tuning checkpoints run on one host's arrays"
    )
    t0 = time.time()
    mcfg, kept_after = _check(cfg)
    mesh = _mesh(cfg)
    d, s = cfg.data, cfg.schedule
    tokenizer, encode, eos = load_encoder(cfg.model)
    data = build_data(cfg, encode, eos, s.stages, tokenizer)  # every data error fires here, before the model loads
    out = Path(cfg.output_dir).absolute()
    claim_output_dir(
        cfg, OUTPUTS, ignore=("progress", "compile_cache", "mesh", "speed", "distributed")
    )  # the tracks resume their checkpoints
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(
        f"[ptl] {cfg.model.name}: remove {s.target} of {s.target_of} ({s.unit}) in {s.stages} {s.spacing} stages "
        f"by {s.criterion}"
        + (f" ({s.ptl_select})" if s.criterion == "ptl" else "")
        + f"; kept after each stage: {kept_after}",
        flush=True,
    )
    print(
        f"[ptl] data: {len(data.split.train)} train / {len(data.split.heldout)} held-out code files "
        f"({len(data.split.excluded)} held-out files dropped: {data.split.excluded}); eval "
        f"{d.eval_windows} windows x {d.seq_len} tokens per corpus; task {len(data.items)} items; "
        + (
            f"GSM8K {len(data.gsm8k)} rows"
            if data.gsm8k
            else ("GSM8K skipped (../shared/data absent)" if d.gsm8k_rows else "GSM8K off")
        ),
        flush=True,
    )
    if cfg.compile_cache:
        _enable_compile_cache()
    memory.clear()
    with memory.phase("load model + tokenizer"):
        model, tokenizer, encode, eos = load_model(cfg.model)
        model = place_model(model, mesh)
    gen = (
        generation.gsm8k_metric(
            data.gsm8k,
            data.gsm8k_prompts,
            tokenizer,
            max_new_tokens=d.gsm8k_max_new_tokens,
            batch_size=d.gsm8k_batch_size,
            prompt_width=d.gsm8k_prompt_width,
        )
        if data.gsm8k
        else None
    )

    def eval_fn(split):
        with memory.phase("eval"):
            return evaluate_stage(split, data.code_eval, data.text_eval, data.items, generation=gen)

    def calib_fn(stage):
        return data.calibration(cfg, encode, eos, stage)

    from jaxlab.train.step import split_model

    train_files = data.split.train
    timings = {}
    t = time.time()
    base = {
        "track": "base",
        "stage": 0,
        "params": param_count(mcfg),
        "kept": None,
        "tokens": 0,
        **eval_fn(split_model(model)),
    }
    timings["base_eval_s"] = round(time.time() - t, 1)
    print(
        f"[ptl] base: code ppl {base['code_ppl']:.3f}, text ppl {base['text_ppl']:.3f}, "
        f"task acc {base['accuracy']:.3f}" + (f", gsm8k {base['gsm8k']:.3f}" if gen else ""),
        flush=True,
    )
    tokens_per_step = d.batch_size * d.seq_len

    def tuner_for(track: str):  # the unpruned model is every track's distillation teacher
        return _tuner(cfg, train_files, tokenizer, encode, eos, mesh, out / track / "tune", model)

    common = dict(
        calib=calib_fn,
        english=None,
        eval_fn=eval_fn,
        progress=cfg.progress,
        eval_final_only=d.eval_stages == "final",
        seed=cfg.model.seed,
    )

    t = time.time()
    ptl = run_track(
        "ptl",
        model,
        full_masks(mcfg),
        kept_after,
        schedule=s,
        tuner=tuner_for("ptl"),
        budget=budget_for(cfg.tune, tokens_per_step),
        ckpt_dir=out / "ptl" / "checkpoints",
        **common,
    )
    timings["ptl_s"] = round(time.time() - t, 1)
    rows = [base, *ptl.rows]
    if "one_shot" in cfg.baselines:
        t = time.time()
        one = run_track(
            "one_shot",
            model,
            full_masks(mcfg),
            kept_after[-1:],
            schedule=s,
            tuner=tuner_for("one_shot"),
            budget=budget_for(cfg.tune, tokens_per_step, multiplier=s.stages),
            ckpt_dir=out / "one_shot" / "checkpoints",
            eval_pruned="no_tune" in cfg.baselines,
            **common,
        )
        timings["one_shot_s"] = round(time.time() - t, 1)
        rows += one.rows
        if "no_tune" in cfg.baselines:
            r = one.rows[-1]
            rows.append({**r, "track": "no_tune", "tokens": 0, **r["pruned"]})
    elif "no_tune" in cfg.baselines:
        none = run_track(
            "no_tune",
            model,
            full_masks(mcfg),
            kept_after[-1:],
            schedule=s,
            tuner=None,
            budget=budget_for(cfg.tune, tokens_per_step),
            ckpt_dir=out / "no_tune" / "checkpoints",
            **common,
        )
        rows += none.rows
    if "random" in cfg.baselines:
        t = time.time()
        rnd = run_track(
            "random",
            model,
            full_masks(mcfg),
            kept_after[-1:],
            schedule=dataclasses.replace(s, criterion="random", ptl_select="ranked"),
            tuner=tuner_for("random"),
            budget=budget_for(cfg.tune, tokens_per_step, multiplier=s.stages),
            ckpt_dir=out / "random" / "checkpoints",
            **common,
        )
        timings["random_s"] = round(time.time() - t, 1)
        rows += rnd.rows

    with memory.phase("compact + export hf_model"):
        small = compact(ptl.model, ptl.masks) if cfg.export_hf or cfg.speed.enabled else None  # on device
        export = _export(cfg, small, tokenizer, out)
    speed = None
    if cfg.speed.enabled:
        t = time.time()
        with memory.phase("speed"):
            speed = measure_speed(model, small, cfg.speed)
        timings["speed_s"] = round(time.time() - t, 1)
    comparisons = compare(rows)
    table = format_table(rows)
    plot = plot_quality(
        rows,
        out / "ptl_vs_oneshot.png",
        f"{cfg.model.name}: {s.unit} pruning to {s.target:.0%} of {s.target_of}, "
        f"{s.criterion}, {s.stages} stages x {budget_for(cfg.tune, tokens_per_step).steps} steps",
    )
    speed_md = "" if speed is None else "\n\n" + format_speed(speed)
    (out / "results.md").write_text(table + "\n\n" + format_comparisons(comparisons) + speed_md + "\n")
    summary = {
        "model": cfg.model.name,
        "mesh": None if mesh is None else dict(mesh.shape),
        "schedule": to_dict(s),
        "kept_after": kept_after,
        "rows": rows,
        "comparisons": comparisons,
        "data": {
            "train_files": len(data.split.train),
            "heldout_files": len(data.split.heldout),
            "heldout_excluded": data.split.excluded,
            "eval_windows": d.eval_windows,
            "seq_len": d.seq_len,
            "task_items": len(data.items),
            "gsm8k_rows": len(data.gsm8k),
        },
        "export": export,
        "speed": None if speed is None else jsonable(speed),
        "ptl_pruned": pruned_indices(ptl.masks),
        "resumed_from": ptl.resumed_from,
        "timings": timings,
        "wall_time_s": round(time.time() - t0, 1),
        "peak_rss_bytes": peak_rss_bytes(),
        "memory_phases": memory.phases(),
        "outputs": {"results": str(out / "results.json"), "table": str(out / "results.md"), "plot": str(plot)},
    }
    write_json(out / "results.json", summary)
    print("\n" + table + "\n\n" + format_comparisons(comparisons) + speed_md, flush=True)
    print("\n" + memory.format_phases(summary["memory_phases"]), flush=True)
    print(
        f"\n[ptl] wrote {out / 'results.json'}, {plot}"
        + (f", {export['path']}" if export.get("path") else "")
        + f" in {summary['wall_time_s']:.0f}s; {format_peak_rss()}",
        flush=True,
    )
    return summary


def _enable_compile_cache() -> None:
    import jax

    from jaxlab.models.smollm2 import cache_root

    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _export(cfg: Config, small, tokenizer, out: Path) -> dict:
    """Write the compacted PTL model as a transformers folder when its widths are uniform (a host copy per
    tensor: safetensors are files)."""
    if not cfg.export_hf:
        return {}
    info = {
        "config": {
            "num_layers": small.config.num_layers,
            "intermediate_size": small.config.intermediate_size,
            "num_heads": small.config.num_heads,
            "num_kv_heads": small.config.num_kv_heads,
        },
        "params": param_count(small.config),
    }
    if not small.config.is_uniform:
        info["note"] = "non-uniform per-layer widths: loadable in jaxlab only (transformers cannot load them)"
        return info
    from jaxlab.models import to_hf

    path = to_hf(small, out / "hf_model")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    info["path"] = str(path)
    return info
