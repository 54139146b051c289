"""The six frameworks in three families, all written on :class:`MASContext`."""

from experiments.mas_prove.frameworks.adas import ADAS
from experiments.mas_prove.frameworks.code import MASZero
from experiments.mas_prove.frameworks.graph import AFlow, MaAS
from experiments.mas_prove.frameworks.iteration import Debate, DyLAN

FRAMEWORKS = {f.name: f for f in (Debate, DyLAN, AFlow, MaAS, ADAS, MASZero)}
FAMILIES = {f.name: f.family for f in FRAMEWORKS.values()}


def make_framework(name: str):
    if name not in FRAMEWORKS:
        raise ValueError(f"framework: expected one of {sorted(FRAMEWORKS)}, got {name!r}")
    return FRAMEWORKS[name]()
