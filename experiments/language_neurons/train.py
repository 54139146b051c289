"""Neuron-specific training: update only the shared, only the exclusive, or only random neurons.

Every track starts from the same model, reads the same multilingual batch stream (catalog text or the
user's ``data.train_dir``, never FLORES / MGSM), runs the same number of AdamW steps at the same
learning-rate schedule, and differs only in which units may change
(:func:`jaxlab.transforms.neuron_optimizer`: every other parameter is bit-identical afterwards; the run
counts the entries that moved as a check). ``exclusive`` is the union over languages of
``set(L) - shared``; ``random`` has the per-layer counts of ``train.random_like`` (shared or exclusive),
drawn from each layer's other units.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Literal

import jax
import numpy as np

from experiments.language_neurons.detect import DETECTORS, unit_count
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import split_model
from jaxlab.train.trainer import TrainConfig, fit
from jaxlab.transforms import LanguageSets, neuron_optimizer, random_control, selection_masks

TRACKS = ("shared", "exclusive", "random")


@dataclasses.dataclass(frozen=True)
class TrainSection:
    steps: int = 8
    """Optimizer updates per track (equal for every track)."""
    learning_rate: float = 2e-4
    warmup_steps: int = 1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 4
    """Sequences per step (languages in turn, so every language is in every batch)."""
    seq_len: int = 48
    tracks: tuple[str, ...] = TRACKS
    detector: Literal["plnd", "lape"] = "plnd"
    """Whose sets are trained (the seed trains PLND's)."""
    random_like: Literal["shared", "exclusive"] = "shared"
    """The random track's per-layer counts copy this set's."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps: expected >= 0 (0 skips training), got {self.steps!r}")
        for name in ("batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate!r}")
        bad = [t for t in self.tracks if t not in TRACKS]
        if bad:
            raise ValueError(f"tracks: expected a subset of {list(TRACKS)}, got {list(self.tracks)}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector: expected one of {list(DETECTORS)}, got {self.detector!r}")


def track_sets(sets: LanguageSets, track: str, random_like: str, seed: int) -> dict[str, np.ndarray]:
    """``{kind: [L, W] bool}`` of the units ``track`` trains."""
    kinds = sets.kinds()
    shared = {k: sets.shared(k) for k in kinds}
    exclusive = {k: sets.exclusive(k).any(axis=0) for k in kinds}
    if track == "shared":
        return shared
    if track == "exclusive":
        return exclusive
    like = shared if random_like == "shared" else exclusive
    return {k: random_control(arr, seed=seed + 13 * i, exclude=arr) for i, (k, arr) in enumerate(like.items())}


def _bits(x: Any) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x))
    return arr.view(np.uint8).reshape(arr.size, -1)


def changed_entries(before: Any, after: Any) -> int:
    """Parameter entries whose bits differ between two params pytrees of the same structure."""
    diff = jax.tree.map(lambda a, b: int(np.any(_bits(a) != _bits(b), axis=1).sum()), before, after)
    return int(sum(jax.tree.leaves(diff)))


def run_track(
    model: Any,
    cfg: Any,
    sets: dict[str, np.ndarray],
    section: TrainSection,
    stream: Callable[[], Iterator[dict]],
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Train the units of ``sets`` for ``section.steps`` steps; ``(trained model, info)``.

    ``info``: ``neurons`` (``{kind: n, total}``), ``changed_entries`` (parameter entries that moved),
    ``trainable_entries`` (entries the mask allows to move) and the loss history.
    """
    from jaxlab.transforms import trainable_mask

    select = selection_masks(cfg, ffn=sets.get("ffn"), qk=sets.get("qk"), vo=sets.get("vo"))
    optim = OptimConfig(
        learning_rate=section.learning_rate,
        warmup_steps=min(section.warmup_steps, section.steps - 1),
        decay_steps=section.steps,
        min_lr_ratio=section.min_lr_ratio,
        weight_decay=section.weight_decay,
    )
    tx = neuron_optimizer(make_optimizer(optim), select)
    result = fit(model, stream(), optim, TrainConfig(steps=section.steps, progress=progress), tx=tx)
    trained = result.model()
    before, after = split_model(model)[1], split_model(trained)[1]
    allowed = int(sum(int(np.sum(np.asarray(m))) for m in jax.tree.leaves(trainable_mask(before, select))))
    info = {
        "neurons": unit_count(sets),
        "changed_entries": changed_entries(before, after),
        "trainable_entries": allowed,
        "loss": [h["loss"] for h in result.history if "loss" in h],
    }
    return trained, info
