"""Language-neurons runner: detect shared / exclusive neurons, deactivate them, train only them.

``jaxlab run configs/language_neurons_smollm2.yaml [key=value ...]``. Every data source is resolved and
every sample built (errors name the config field) before the model loads; then, under ``output_dir``:

1. statistics per language (``stats/main/<lang>``, tensorstore, resumable) and PLND + LAPE sets;
   ``neuron_counts.png``: shared / exclusive counts per layer per language, per detector;
2. perplexity per language with the shared set, each language's exclusive set and random sets of equal
   size deactivated (``deactivation_<detector>.png``);
3. neuron-specific training (shared-only, exclusive-only, random-only; equal steps and learning rate),
   per-language held-out perplexity and MGSM accuracy before and after;
4. the development axis: the shared-neuron ratio of each checkpoint in ``development``.

``results.json`` holds every number, ``results.md`` the tables; ``run.json`` the config (a rerun with the
same config resumes its collections; another config refuses the directory unless ``overwrite=true``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.language_neurons import corpora as corpora_mod
from experiments.language_neurons import data as data_mod
from experiments.language_neurons import report, samples
from experiments.language_neurons.deactivate import DeactivateSection, neuron_label, run_deactivation, table_rows
from experiments.language_neurons.detect import DetectSection, collect, detect, overlap, set_counts, shared_ratio
from experiments.language_neurons.evaluate import (
    language_ppl,
    mgsm_accuracy,
    mgsm_metrics,
    ratio_to,
    strip_per_sentence,
)
from experiments.language_neurons.train import TrainSection, run_track, track_sets
from experiments.ptl.runner import ModelSection, load_encoder, load_model, model_config
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.distributed import DistributedConfig
from jaxlab.runs import claim_output_dir
from jaxlab.train.step import split_model
from jaxlab.train.run_setup import refuse_multiprocess
from jaxlab.transforms.neuron_stats import check_model


@dataclasses.dataclass(frozen=True)
class DataSection:
    dir: str | None = None
    """Detection text: a folder of ``<lang>.txt`` / ``<lang>.jsonl`` (or the FLORES devtest folder);
    null: the gettext catalogs under ``catalogs``."""
    catalogs: str = data_mod.DEFAULT_LOCALE_ROOT
    min_letters: int = 12
    """A catalog message counts when its English has at least this many letters."""
    eval_dir: str = "auto"
    """Held-out perplexity text: ``auto`` (../shared/data/flores200_devtest when present, else ``catalogs``),
    ``catalogs`` (the catalogs' held-out part) or a folder like ``dir``."""
    train_dir: str | None = None
    """Neuron-specific training text (``<lang>.txt`` / ``.jsonl``); null: the catalogs' train part."""
    detect_samples: int = 8
    """Detection samples per language (PLND: a neuron must be in the top r of every one)."""
    detect_seq_len: int = 48
    detect_batch_size: int = 8
    eval_sentences: int = 16
    """Held-out sentences per language (one per row)."""
    eval_max_len: int = 48
    """Tokens kept per evaluation sentence."""
    eval_batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(
            **{
                n: getattr(self, n)
                for n in (
                    "min_letters",
                    "detect_samples",
                    "detect_seq_len",
                    "detect_batch_size",
                    "eval_sentences",
                    "eval_max_len",
                    "eval_batch_size",
                )
            }
        )


@dataclasses.dataclass(frozen=True)
class MgsmSection:
    dir: str | None = "auto"
    """Folder of ``mgsm_<lang>.tsv``; ``auto``: ../shared/data/mgsm when present (else off); null: off."""
    rows: int = 8
    """Problems per language (0: off)."""
    languages: tuple[str, ...] | None = None
    """Default: the run's languages that MGSM has."""
    max_new_tokens: int = 128
    batch_size: int = 8
    prompt_width: int = 320

    def __post_init__(self) -> None:
        if self.rows < 0:
            raise ValueError(f"rows: expected >= 0, got {self.rows!r}")
        require_positive(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, prompt_width=self.prompt_width)


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str
    overwrite: bool = False
    model: ModelSection = ModelSection()
    languages: tuple[str, ...] = ("en", "fr", "de", "es", "ru")
    data: DataSection = DataSection()
    detect: DetectSection = DetectSection()
    deactivate: DeactivateSection = DeactivateSection()
    train: TrainSection = TrainSection()
    mgsm: MgsmSection = MgsmSection()
    development: tuple[str, ...] = ()
    """Other checkpoints of the model's family (HF folders or the built-in name), e.g. the base and a
    continually pretrained one: their shared-neuron ratio on the same detection samples."""
    progress: bool = True
    distributed: DistributedConfig | None = None
    """Accepted so every runner reads the same keys; more than one process is refused (see ``run``)."""

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir: expected a non-empty path")
        if len(self.languages) < 2 or len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages: expected at least two distinct languages, got {list(self.languages)}")
        for lang in self.languages:
            data_mod.lang_info(lang)
        if self.mgsm.languages is not None:
            extra = [x for x in self.mgsm.languages if x not in self.languages]
            if extra:
                raise ValueError(f"mgsm.languages: {extra} are not in languages {list(self.languages)}")


OUTPUTS = (
    "config.yaml",
    "results.json",
    "results.md",
    "neuron_counts.png",
    "deactivation_plnd.png",
    "deactivation_lape.png",
    "stats",
)


@dataclasses.dataclass
class Prepared:
    """Everything built from the config before the model loads."""

    corpora: corpora_mod.Corpora
    detect: dict[str, list[dict]]
    eval: dict[str, list[dict]]
    stream: Any
    mgsm: dict
    development: list[str]


def _prepare(cfg: Config) -> tuple[Any, Any, Prepared]:
    mcfg = model_config(cfg.model)
    try:
        check_model(mcfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    d, t = cfg.data, cfg.train
    for name, length in (
        ("data.detect_seq_len", d.detect_seq_len),
        ("data.eval_max_len", d.eval_max_len),
        ("train.seq_len", t.seq_len),
    ):
        if length + 1 > mcfg.max_position_embeddings:
            raise ConfigError(f"{name}: {length} exceeds the model's {mcfg.max_position_embeddings} positions")
    tokenizer, encode, eos = load_encoder(cfg.model)
    langs = list(cfg.languages)
    try:
        corp = corpora_mod.build_corpora(d, cfg.mgsm, langs, detect_used=_detect_texts_used(cfg, encode, eos))
        det = {
            lang: samples.packed_samples(
                corp.detect[lang],
                encode,
                eos,
                d.detect_seq_len,
                d.detect_samples,
                d.detect_batch_size,
                f"data.detect_samples ({lang})",
            )
            for lang in langs
        }
        ev = {
            lang: samples.sentence_batches(
                corp.eval[lang], encode, eos, d.eval_max_len, d.eval_batch_size, f"data.eval_sentences ({lang})"
            )
            for lang in langs
        }
        stream = lambda: samples.MixedStream(corp.train, encode, eos, t.seq_len, t.batch_size, t.seed)  # noqa: E731
        next(stream())
        metrics = mgsm_metrics(
            corp.mgsm,
            tokenizer,
            encode,
            max_new_tokens=cfg.mgsm.max_new_tokens,
            batch_size=cfg.mgsm.batch_size,
            prompt_width=cfg.mgsm.prompt_width,
        )
        dev = [_check_development(src, mcfg) for src in cfg.development]
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
    return mcfg, tokenizer, Prepared(corp, det, ev, stream, metrics, dev)


def _detect_texts_used(cfg: Config, encode: Any, eos: int) -> int:
    """How many leading texts of ``data.dir`` the detection samples consume (the most over languages)."""
    d = cfg.data
    if d.dir is None:
        return 0
    used = 0
    for lang in cfg.languages:
        n, filled, current = 0, 0, 0
        for text in data_mod.folder_texts(d.dir, lang, "data.dir"):
            n += 1
            current += len(encode(text)) + 1
            if current >= d.detect_seq_len + 1:
                filled, current = filled + 1, 0
                if filled == d.detect_samples:
                    break
        used = max(used, n)
    return used


def _check_development(source: str, mcfg: Any) -> str:
    """The HF folder of a development checkpoint; it must share the model's vocabulary and shapes."""
    from jaxlab.models.pretrained import pretrained_config, resolve_folder

    try:
        other = pretrained_config(source)
    except FileNotFoundError as exc:
        raise ValueError(f"development: {exc}") from None
    for field in ("vocab_size", "num_layers", "intermediate_size", "num_heads", "head_dim"):
        if getattr(other, field) != getattr(mcfg, field):
            raise ValueError(
                f"development: {source!r} has {field} {getattr(other, field)}, the model has "
                f"{getattr(mcfg, field)} (the checkpoints must be one model family and size)"
            )
    return str(resolve_folder(source))


def run(cfg: Config) -> dict:
    """Run every step of the module docstring; print the tables; return the summary written to results.json."""
    refuse_multiprocess(
        cfg,
        "language-neurons",
        "activation statistics, deactivation and its training run on "
        "one host's arrays, and every process would write the results",
    )
    t0 = time.time()
    mcfg, tokenizer, prep = _prepare(cfg)
    out = Path(cfg.output_dir).absolute()
    claim_output_dir(cfg, OUTPUTS, ignore=("progress", "distributed"))
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    langs = list(cfg.languages)
    name = cfg.model.path or cfg.model.name
    print(f"[language_neurons] {name}: languages {langs}; sources {prep.corpora.sources}", flush=True)
    timings: dict[str, float] = {}

    t = time.time()
    model, _, _, _ = load_model(cfg.model)
    split = split_model(model)
    timings["load_s"] = round(time.time() - t, 1)

    t = time.time()
    stores = collect(split, prep.detect, out / "stats" / "main")
    detected = detect(stores, cfg.detect)
    timings["detect_s"] = round(time.time() - t, 1)
    counts = set_counts(detected)
    attn_counts = set_counts({"plnd": detected["plnd"]}, "qk") if "qk" in detected["plnd"].kinds() else {}
    vo_counts = set_counts({"plnd": detected["plnd"]}, "vo") if "vo" in detected["plnd"].kinds() else {}
    jac = overlap(detected)
    report.plot_counts(
        counts,
        out / "neuron_counts.png",
        f"{name}: FFN language neurons per layer (PLND r={cfg.detect.plnd_ratio}, "
        f"LAPE top {cfg.detect.lape_top_rate}), {cfg.data.detect_samples} samples x "
        f"{cfg.data.detect_seq_len} tokens per language",
    )

    evaluate = lambda s: language_ppl(s, prep.eval, cfg.progress)  # noqa: E731
    t = time.time()
    base = evaluate(split)
    base_mgsm = mgsm_accuracy(split, prep.mgsm)
    timings["base_eval_s"] = round(time.time() - t, 1)

    t = time.time()
    deact = run_deactivation(split, mcfg, detected, cfg.deactivate, base, evaluate, cfg.progress)
    timings["deactivate_s"] = round(time.time() - t, 1)
    plots = {}
    for det, rows in deact.items():
        plots[det] = str(
            report.plot_deactivation(
                base,
                table_rows(rows),
                langs,
                out / f"deactivation_{det}.png",
                f"{name}: perplexity ratio to intact with {det.upper()} sets deactivated "
                f"({cfg.data.eval_sentences} held-out sentences per language)",
            )
        )

    t = time.time()
    tracks = _train_tracks(cfg, model, mcfg, detected, prep, base, evaluate)
    timings["train_s"] = round(time.time() - t, 1)

    t = time.time()
    development = _development(cfg, name, detected, prep, out)
    timings["development_s"] = round(time.time() - t, 1)

    before = {
        "ppl": strip_per_sentence(base),
        "mgsm": {k: {x: y for x, y in v.items() if x != "correct"} for k, v in base_mgsm.items()},
    }
    md = _markdown(cfg, name, prep, counts, attn_counts, vo_counts, jac, base, deact, before, tracks, development)
    (out / "results.md").write_text(md)
    summary = {
        "model": name,
        "languages": langs,
        "sources": prep.corpora.sources,
        "detect": {
            "counts_ffn": counts,
            "counts_qk": attn_counts,
            "counts_vo": vo_counts,
            "summary": {k: v.summary() for k, v in detected.items()},
            "jaccard": jac,
            "samples_per_language": cfg.data.detect_samples,
            "tokens_per_language": {lang: int(s.sums()["tokens"]) for lang, s in stores.items()},
        },
        "intact": before,
        "deactivation": deact,
        "training": tracks,
        "development": development,
        "timings": timings,
        "wall_time_s": round(time.time() - t0, 1),
        "outputs": {
            "results": str(out / "results.json"),
            "table": str(out / "results.md"),
            "heat_map": str(out / "neuron_counts.png"),
            "deactivation_plots": plots,
        },
    }
    report.write_json(out / "results.json", summary)
    print("\n" + md, flush=True)
    print(f"[language_neurons] wrote {out / 'results.json'} in {summary['wall_time_s']:.0f}s", flush=True)
    return summary


def _train_tracks(
    cfg: Config, model: Any, mcfg: Any, detected: dict, prep: Prepared, base: dict, evaluate: Any
) -> list[dict]:
    t = cfg.train
    if t.steps == 0:
        return []
    sets = detected[t.detector]
    rows = []
    for track in t.tracks:
        chosen = track_sets(sets, track, t.random_like, t.seed)
        print(f"[language_neurons] train {track}-only ({t.detector})", flush=True)
        if not any(arr.any() for arr in chosen.values()):
            rows.append({"name": f"{track}-only", "neurons": {"total": 0}, "note": "empty set: nothing to train"})
            continue
        trained, info = run_track(model, mcfg, chosen, t, prep.stream, cfg.progress)
        split = split_model(trained)
        ppl = evaluate(split)
        mg = mgsm_accuracy(split, prep.mgsm)
        rows.append(
            {
                "name": f"{track}-only",
                **info,
                "ppl": strip_per_sentence(ppl),
                "ratio": ratio_to(ppl, base),
                "mgsm": {k: {x: y for x, y in v.items() if x != "correct"} for k, v in mg.items()},
            }
        )
    return rows


def _development(cfg: Config, name: str, detected: dict, prep: Prepared, out: Path) -> list[dict]:
    rows = [{"model": name, **{f"{det}": shared_ratio(s) for det, s in detected.items()}}]
    for i, folder in enumerate(prep.development):
        from jaxlab.models import from_hf

        other = split_model(from_hf(folder))
        sets = detect(collect(other, prep.detect, out / "stats" / f"development_{i}"), cfg.detect)
        rows.append({"model": cfg.development[i], **{det: shared_ratio(s) for det, s in sets.items()}})
    return rows


def _markdown(cfg, name, prep, counts, attn_counts, vo_counts, jac, base, deact, before, tracks, development) -> str:
    langs = list(cfg.languages)
    parts = [
        f"# Language neurons: {name}",
        "",
        f"Sources: {prep.corpora.sources}. Detection: {cfg.data.detect_samples} samples x "
        f"{cfg.data.detect_seq_len} tokens per language; evaluation: {cfg.data.eval_sentences} held-out "
        f"sentences per language (at most {cfg.data.eval_max_len} tokens each). All numbers measured.",
        "",
        "## Neuron sets (FFN neurons, summed over layers)",
        "",
        report.counts_table(
            counts, {f"per language {k}": v for k, v in jac["per_lang"].items()} | {"shared sets": jac["shared"]}
        ),
    ]
    if attn_counts:
        parts += [
            "",
            "PLND attention dimensions (q/k score, v/o score), summed over layers:",
            "",
            report.counts_table({"plnd q/k": attn_counts["plnd"], "plnd v/o": vo_counts["plnd"]}, {}),
        ]
    for det, rows in deact.items():
        parts += [
            "",
            f"## Deactivation ({det.upper()}): perplexity (ratio to intact; * = paired 95% interval excludes 1)",
            "",
            report.deactivation_table(base, table_rows(rows), langs),
        ]
    if tracks:
        trained = [r for r in tracks if "ppl" in r]
        mgsm_langs = list(before["mgsm"])
        t = cfg.train
        parts += [
            "",
            f"## Neuron-specific training ({t.detector.upper()} sets, {t.steps} steps x {t.batch_size} x "
            f"{t.seq_len} tokens, lr {t.learning_rate}; train text: {prep.corpora.sources['train']})",
            "",
            report.training_table(
                before, [{**r, "neurons": neuron_label(r["neurons"])} for r in trained], langs, mgsm_langs
            ),
        ]
        parts += [f"- {r['name']}: {r['note']}" for r in tracks if "note" in r]
        parts += [
            f"- {r['name']}: {r['changed_entries']} of {r['trainable_entries']} trainable parameter entries "
            "changed (every other entry bit-identical)"
            for r in trained
        ]
    dev_rows = [
        {"model": r["model"], "detector": det, **r[det]["ffn"]}
        for r in development
        for det in ("plnd", "lape")
        if det in r
    ]
    parts += ["", "## Development axis: shared-neuron ratio (FFN)", "", report.development_table(dev_rows), ""]
    return "\n".join(parts)
