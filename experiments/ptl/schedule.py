"""The compression schedule: how much to remove, in how many stages, by which criterion.

Validated twice before any work starts: the dataclass checks what needs no
model (ratios, stage count, criterion); :func:`plan` checks it against the
model's config (at least one unit left per layer, at least one removed per stage)
and returns the number of units kept after each stage.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.models.config import ModelConfig
from jaxlab.transforms import CRITERIA, param_count

Unit = Literal["mlp", "kv_heads", "layers"]
_NAMES = {"mlp": "MLP neurons per layer", "kv_heads": "KV groups per layer", "layers": "layers"}


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """What PTL removes and how it spreads the removal over stages."""

    unit: Unit = "mlp"
    """``mlp``: intermediate neurons (same count from every layer); ``kv_heads``: whole GQA groups; ``layers``."""
    target: float = 0.3
    """Fraction to remove, of the units (``target_of: units``) or of all parameters (``target_of: params``)."""
    target_of: Literal["units", "params"] = "units"
    stages: int = 3
    spacing: Literal["linear", "geometric"] = "linear"
    """``linear``: equal removal per stage; ``geometric``: equal keep-ratio per stage (removes more early)."""
    criterion: str = "ptl"
    """Importance criterion, one of ``jaxlab.transforms.CRITERIA[unit]``."""
    top_frac: float = 0.8
    """``ptl`` criterion only: the seed's top_n as a fraction of the kept width."""
    ptl_signed: bool = False
    """``ptl`` with ``ptl_select: ranked`` only: rank signed activations instead of magnitudes."""
    ptl_select: Literal["ranked", "seed_exact"] = "ranked"
    """``ptl`` criterion only. ``ranked`` (default; jaxlab's variant): order neurons by deletion votes, then
    protection votes, then mean |down input|, to hit the exact count. ``seed_exact``: the authors' selection
    (Arrebol-logos/PTL): signed values, deletion set = union over gate/up/down of (task set - English set),
    the first n candidates by neuron index; a layer with fewer than n candidates fails the run, naming the
    layer. ``seed_exact`` always reads signed values (``ptl_signed`` applies to ``ranked``)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target: expected a fraction in (0, 1) to remove, got {self.target!r}")
        if self.stages < 1:
            raise ValueError(f"stages: expected an integer >= 1, got {self.stages!r}")
        if self.criterion not in CRITERIA[self.unit]:
            raise ValueError(
                f"criterion: {self.criterion!r} is unknown for unit {self.unit!r}; "
                f"expected one of {list(CRITERIA[self.unit])}"
            )
        if not 0.0 < self.top_frac <= 1.0:
            raise ValueError(f"top_frac: expected a fraction in (0, 1], got {self.top_frac!r}")
        if self.ptl_select not in ("ranked", "seed_exact"):
            raise ValueError(f"ptl_select: expected 'ranked' or 'seed_exact', got {self.ptl_select!r}")
        if self.ptl_select == "seed_exact" and self.criterion != "ptl":
            raise ValueError(
                f"ptl_select: 'seed_exact' is a selection of the 'ptl' criterion, got criterion {self.criterion!r}"
            )


def units_available(cfg: ModelConfig, unit: Unit) -> int:
    """Units per layer (``mlp``/``kv_heads``, the narrowest layer) or layers in total."""
    if unit == "mlp":
        return min(cfg.layer_intermediate)
    if unit == "kv_heads":
        return min(cfg.layer_kv_heads)
    return cfg.num_layers


def _params_per_unit(cfg: ModelConfig, unit: Unit) -> float:
    """Parameters one unit removes from the whole model (per-layer units count in every layer)."""
    d, hd, n = cfg.hidden_size, cfg.head_dim, cfg.num_layers
    if unit == "mlp":
        return 3 * d * n
    if unit == "kv_heads":
        groups = cfg.layer_heads[0] // cfg.layer_kv_heads[0]
        return (2 * d * hd + 2 * groups * d * hd) * n
    return (param_count(cfg) - param_count(cfg.replace(num_layers=1))) / max(n - 1, 1)


def plan(schedule: ScheduleConfig, cfg: ModelConfig) -> list[int]:
    """Units kept after each stage (per layer for ``mlp``/``kv_heads``; layers for ``layers``)."""
    total = units_available(cfg, schedule.unit)
    if schedule.target_of == "units":
        remove = round(schedule.target * total)
    else:
        remove = round(schedule.target * param_count(cfg) / _params_per_unit(cfg, schedule.unit))
    final = total - remove
    what = _NAMES[schedule.unit]
    if final < 1:
        raise ValueError(
            f"schedule.target: removing {schedule.target} of the {schedule.target_of} leaves {final} of "
            f"{total} {what}; expected at least one unit per layer to remain"
        )
    if remove < 1:
        raise ValueError(
            f"schedule.target: {schedule.target} of the {schedule.target_of} is less than one of the "
            f"{total} {what}; nothing would be pruned"
        )
    kept = []
    for k in range(1, schedule.stages + 1):
        if schedule.spacing == "linear":
            kept.append(round(total - remove * k / schedule.stages))
        else:
            kept.append(round(total * (final / total) ** (k / schedule.stages)))
    kept[-1] = final
    steps = [a - b for a, b in zip([total] + kept[:-1], kept)]
    if min(steps) < 1:
        raise ValueError(
            f"schedule.stages: {schedule.stages} {schedule.spacing} stages remove {steps} {what}; "
            f"every stage must remove at least one unit (fewer stages or a larger target)"
        )
    return kept
