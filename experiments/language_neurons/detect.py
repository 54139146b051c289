"""Detection step of a run: per-language statistics to tensorstore, then PLND and LAPE sets.

Statistics go through :func:`jaxlab.transforms.collect_to_store`, one collection per (model,
language) under ``output_dir/stats/<tag>/<lang>``, so a killed run resumes from the last completed
batch. PLND reads the per-sample scores one layer at a time; LAPE reads the activation counts.
:func:`set_counts` flattens both detectors' sets into the per-layer counts the heat map and the
tables show.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxlab.transforms import (
    LanguageSets,
    NeuronStore,
    activation_probability,
    collect_to_store,
    detector_overlap,
    lape_detect,
    plnd_detect,
)

DETECTORS = ("plnd", "lape")


@dataclasses.dataclass(frozen=True)
class DetectSection:
    """Detector hyperparameters (defaults: the papers', see ../shared/notes/papers.md)."""

    plnd_ratio: float = 0.01
    """PLND: top fraction per sample (the seed's r = 1%; its released neuron files use 5%)."""
    plnd_attn_ratio: float | None = None
    """PLND top fraction for the attention q/k and v/o dimensions (default: ``plnd_ratio``)."""
    plnd_attention: bool = True
    """Detect (and deactivate / train) PLND's attention dimensions too, as the seed; false: FFN only."""
    lape_top_rate: float = 0.01
    """LAPE: keep the lowest-entropy 1% of neurons."""
    lape_filter_rate: float = 0.95
    """LAPE: drop neurons whose activation probability exceeds the 95th percentile in no language."""
    lape_bar_ratio: float = 0.95
    """LAPE: a kept neuron belongs to every language whose probability exceeds this percentile."""

    def __post_init__(self) -> None:
        for name in ("plnd_ratio", "lape_top_rate", "lape_filter_rate", "lape_bar_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}: expected a fraction in (0, 1], got {value!r}")
        if self.plnd_attn_ratio is not None and not 0.0 < self.plnd_attn_ratio <= 1.0:
            raise ValueError(f"plnd_attn_ratio: expected a fraction in (0, 1] or null, got {self.plnd_attn_ratio!r}")


def collect(split: Any, batches: Mapping[str, Sequence[dict]], root: Path) -> dict[str, NeuronStore]:
    """One resumable collection per language under ``root/<lang>``."""
    return {lang: collect_to_store(split, iter(bs), root / lang, resume=True) for lang, bs in batches.items()}


def detect(stores: Mapping[str, NeuronStore], cfg: DetectSection) -> dict[str, LanguageSets]:
    """``{"plnd": sets, "lape": sets}`` from the collections (same language order as ``stores``)."""
    kinds = ("ffn", "qk", "vo") if cfg.plnd_attention else ("ffn",)
    plnd = plnd_detect(dict(stores), ratio=cfg.plnd_ratio, attn_ratio=cfg.plnd_attn_ratio, kinds=kinds)
    probs = {}
    for lang, store in stores.items():
        sums = store.sums()
        probs[lang] = activation_probability(sums["act_count"], int(sums["tokens"]))
    lape = lape_detect(
        probs, top_rate=cfg.lape_top_rate, filter_rate=cfg.lape_filter_rate, bar_ratio=cfg.lape_bar_ratio
    )
    return {"plnd": plnd, "lape": lape}


def set_counts(sets: Mapping[str, LanguageSets], kind: str = "ffn") -> dict[str, dict[str, list[int]]]:
    """Per detector, per-layer counts of ``kind``: each language's set, ``shared``, ``exclusive:<lang>``."""
    out = {}
    for name, s in sets.items():
        rows: dict[str, list[int]] = {}
        for lang in s.langs:
            rows[lang] = s.get(kind, lang).sum(-1).astype(int).tolist()
        rows["shared"] = s.shared(kind).sum(-1).astype(int).tolist()
        for lang in s.langs:
            rows[f"exclusive:{lang}"] = s.exclusive(kind, lang).sum(-1).astype(int).tolist()
        out[name] = rows
    return out


def unit_count(sets: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{kind: units}`` of a ``{kind: [L, W] bool}`` selection, plus ``total``."""
    out = {kind: int(np.sum(arr)) for kind, arr in sets.items()}
    out["total"] = sum(out.values())
    return out


def overlap(sets: Mapping[str, LanguageSets]) -> dict[str, Any]:
    """PLND vs LAPE Jaccard of the FFN sets: per language and of the shared sets."""
    o = detector_overlap(sets["plnd"], sets["lape"])
    return {"per_lang": {k: float(v) for k, v in o["per_lang"].items()}, "shared": float(o["shared"])}


def shared_ratio(sets: LanguageSets) -> dict[str, dict[str, Any]]:
    """Per kind: shared units, units in any language's set (union), and the seed's ratio shared / union."""
    summary = sets.summary()
    return {
        kind: {
            "shared": int(np.sum(summary[kind]["shared"])),
            "union": int(np.sum(summary[kind]["union"])),
            "ratio": summary[kind]["shared_share_total"],
        }
        for kind in sets.kinds()
    }
