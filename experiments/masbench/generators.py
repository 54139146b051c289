"""Pick a MASBench generator by name: ``dag`` (generic word problems) or ``igsm`` (the authors' iGSM style).

Runners take a ``generator`` config key and call :func:`generate_split`; both generators share the axes,
the level range and the :class:`~experiments.masbench.generator.Problem` interface (``id``, ``axis``,
``level``, ``question``, ``answers``, ``gold``), so scoring is the same.
"""

from __future__ import annotations

from typing import Callable

from experiments.masbench import generator as dag
from experiments.masbench import igsm
from experiments.masbench.generator import Problem

GENERATORS: dict[str, tuple[Callable[[str, int, int], Problem], Callable[..., list]]] = {
    "dag": (dag.generate, dag.generate_split),
    "igsm": (igsm.generate, igsm.generate_split),
}


def check_generator(name: str, field: str = "generator") -> str:
    if name not in GENERATORS:
        raise ValueError(f"{field}: expected one of {list(GENERATORS)}, got {name!r}")
    return name


def generate(axis: str, level: int, seed: int, generator: str = "dag") -> Problem:
    return GENERATORS[check_generator(generator)][0](axis, level, seed)


def generate_split(
    axes: list[str] | tuple[str, ...],
    levels: list[int] | tuple[int, ...],
    per_level: int,
    seed: int = 0,
    generator: str = "dag",
) -> list[Problem]:
    """``per_level`` problems per (axis, level) from the named generator, deterministic in ``seed``."""
    return GENERATORS[check_generator(generator)][1](axes, levels, per_level, seed)
