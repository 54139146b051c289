"""Deactivation step: per-language perplexity with a neuron set zeroed, against a random set of equal size.

For each detector the conditions are: the shared set; a random control with the shared set's count in
every layer (drawn from that layer's other units); each language's exclusive set; and (optionally)
a random control of each exclusive set's size. PLND sets zero ``up`` columns / ``down`` rows and, with
attention, ``q``/``k``/``v`` columns and ``o`` rows (the seed); LAPE sets zero the ``gate`` column, i.e.
``SiLU(gate) = 0`` (its anchor). Every condition is scored on the same held-out sentences as the
intact model, so its ratio to intact has a paired bootstrap interval.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from experiments.language_neurons.detect import DETECTORS, unit_count
from experiments.language_neurons.evaluate import ratio_to, strip_per_sentence
from jaxlab.transforms import LanguageSets, apply_neuron_masks, deactivation_masks, random_control


@dataclasses.dataclass(frozen=True)
class DeactivateSection:
    detectors: tuple[str, ...] = DETECTORS
    """Which detectors' sets to deactivate (``plnd``, ``lape``); empty: skip deactivation (e.g. a run for the
    development axis alone)."""
    random_exclusive: bool = True
    """Also score a random control of each language's exclusive-set size (one more condition per language)."""
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [d for d in self.detectors if d not in DETECTORS]
        if bad:
            raise ValueError(f"detectors: expected a subset of {list(DETECTORS)}, got {list(self.detectors)}")


def _random_like(sets: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    return {kind: random_control(arr, seed=seed + 7919 * i, exclude=arr) for i, (kind, arr) in enumerate(sets.items())}


def conditions(sets: LanguageSets, random_exclusive: bool, seed: int) -> list[dict[str, Any]]:
    """``[{"name", "sets": {kind: [L, W] bool}}]`` in table order (see the module docstring)."""
    kinds = sets.kinds()
    shared = {k: sets.shared(k) for k in kinds}
    out = [{"name": "shared", "sets": shared}, {"name": "random (shared size)", "sets": _random_like(shared, seed)}]
    for i, lang in enumerate(sets.langs):
        excl = {k: sets.exclusive(k, lang) for k in kinds}
        out.append({"name": f"exclusive:{lang}", "sets": excl})
        if random_exclusive:
            out.append({"name": f"random (exclusive:{lang} size)", "sets": _random_like(excl, seed + 101 * (i + 1))})
    return out


def deactivated_params(params: Any, cfg: Any, sets: Mapping[str, np.ndarray], style: str) -> Any:
    """``params`` with the units of ``sets`` (``{"ffn"|"qk"|"vo": [L, W]}``) zeroed the detector's way."""
    masks = deactivation_masks(cfg, ffn=sets.get("ffn"), qk=sets.get("qk"), vo=sets.get("vo"))
    return apply_neuron_masks(params, masks, style)


def run_deactivation(
    split: tuple,
    cfg: Any,
    detected: Mapping[str, LanguageSets],
    section: DeactivateSection,
    base: Mapping[str, dict],
    evaluate: Callable[[tuple], dict],
    progress: bool = True,
) -> dict[str, list[dict]]:
    """``{detector: [condition rows]}``; a row has ``name``, ``neurons`` (``{kind: n, total}``), per-language
    ``ppl`` and ``ratio`` to ``base`` (the intact model's :func:`language_ppl` on the same sentences)."""
    graphdef, params, rest = split
    todo = [
        (det, c) for det in section.detectors for c in conditions(detected[det], section.random_exclusive, section.seed)
    ]
    out: dict[str, list[dict]] = {det: [] for det in section.detectors}
    for det, c in tqdm(todo, desc="deactivate", unit="set", disable=not progress):
        n = unit_count(c["sets"])
        if n["total"] == 0:  # an empty set leaves the model intact: no forward pass needed
            ppl, note = dict(base), "empty set: the intact model"
        else:
            ppl, note = evaluate((graphdef, deactivated_params(params, cfg, c["sets"], det), rest)), None
        row = {"name": c["name"], "neurons": n, "ppl": strip_per_sentence(ppl), "ratio": ratio_to(ppl, base)}
        if note:
            row["note"] = note
        out[det].append(row)
    return out


def neuron_label(n: Mapping[str, int]) -> str:
    """``"ffn 120 + attn 40"`` (attention = q/k + v/o dims) or ``"ffn 120"``."""
    attn = n.get("qk", 0) + n.get("vo", 0)
    return f"ffn {n.get('ffn', 0)}" + (f" + attn {attn}" if "qk" in n or "vo" in n else "")


def table_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows for :func:`experiments.language_neurons.report.deactivation_table` (neuron counts as labels)."""
    return [{**r, "neurons": neuron_label(r["neurons"])} for r in rows]
