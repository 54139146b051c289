"""The collectives a compiled (SPMD-partitioned) program runs, read from its HLO text.

Used by the EP tests (the weight exchange moves one expert per round, nothing
sized by ``D x max_extra``) and by ``experiments/llep/bench.py`` (bytes each
device's collectives move, charged under a link model).  Sizes are the
per-device result shapes of each collective instruction; an instruction inside
a ``while`` body runs once per iteration, which the HLO cannot tell, so it is
flagged ``in_loop`` and the caller multiplies by the trip count it knows.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

COLLECTIVE_OPS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute", "ragged-all-to-all")
_DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "bf16": 2,
    "f16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
}
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+("
    + "|".join(re.escape(op) for op in sorted(COLLECTIVE_OPS, key=len, reverse=True))
    + r")(?:-start)?\("
)
_SHAPE = re.compile(r"\b(pred|[su](?:8|16|32|64)|bf16|f(?:16|32|64))\[([\d,]*)\]")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_GROUPS_LIST = re.compile(r"replica_groups=\{\{([\d,]*)\}")
_GROUPS_IOTA = re.compile(r"replica_groups=\[(\d+),(\d+)\]<=")
_BODY = re.compile(r"body=%?([\w.\-]+)")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition|branch_computations)=\{?%?([\w.\-, %]+)\}?")


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective instruction: kind, per-device result bytes, and where it sits."""

    op: str
    bytes: int
    op_name: str
    computation: str
    in_loop: bool
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    group_size: int | None  # devices per replica group; None when the HLO names pairs instead


def _shape_bytes(text: str) -> tuple[int, tuple[tuple[str, tuple[int, ...]], ...]]:
    shapes = tuple((dt, tuple(int(d) for d in dims.split(",") if d)) for dt, dims in _SHAPE.findall(text))
    return sum(_DTYPE_BYTES[dt] * int(np.prod(dims, dtype=np.int64)) for dt, dims in shapes), shapes


def _group_size(line: str) -> int | None:
    listed = _GROUPS_LIST.search(line)
    if listed:
        return len([d for d in listed.group(1).split(",") if d])
    iota = _GROUPS_IOTA.search(line)
    return int(iota.group(2)) if iota else None


def _computations(hlo: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in hlo.splitlines():
        match = _COMPUTATION.match(line)
        if match:
            current = match.group(1)
            blocks[current] = []
        elif line.startswith("}"):
            current = None
        elif current is not None:
            blocks[current].append(line)
    return blocks


def _loop_computations(blocks: dict[str, list[str]]) -> set[str]:
    """While bodies and everything they call, transitively."""
    todo = [b for lines in blocks.values() for line in lines for b in _BODY.findall(line)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in blocks:
            continue
        seen.add(name)
        for line in blocks[name]:
            for group in _CALLS.findall(line):
                todo.extend(n.strip().lstrip("%") for n in group.split(","))
    return seen


def collectives(hlo: str) -> list[Collective]:
    """Every collective instruction in ``compiled.as_text()`` with its per-device bytes."""
    blocks = _computations(hlo)
    in_loop = _loop_computations(blocks)
    found = []
    for name, lines in blocks.items():
        for line in lines:
            match = _INSTR.match(line)
            if not match:
                continue
            size, shapes = _shape_bytes(match.group(1))
            op_name = _OP_NAME.search(line)
            found.append(
                Collective(
                    match.group(2),
                    size,
                    op_name.group(1) if op_name else "",
                    name,
                    name in in_loop,
                    shapes,
                    _group_size(line),
                )
            )
    return found
