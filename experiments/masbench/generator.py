"""Seeded MASBench-style generator: word problems built on quantity dependency graphs.

The MASBench authors did not release their generator, so this one builds each
problem from an explicit DAG whose structure *is* the axis being measured:

* ``depth``      — one chain of ``level`` quantities; only the last is asked.
* ``horizon``    — a chain with ``level`` derived quantities, every one asked in
                   order (intermediate answers must be carried forward).
* ``breadth``    — one quantity that depends on ``level`` others (in-degree).
* ``parallel``   — ``level`` independent chains, one answer per chain.
* ``robustness`` — a ``level``-step chain (intermediate + final asked) buried
                   among irrelevant facts and adversarial "unverified" notes.

The graph is kept with the problem so tests (and analyses) can check the
structural property rather than trust the text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

AXES = ("depth", "horizon", "breadth", "parallel", "robustness")
MIN_LEVEL, MAX_LEVEL = 2, 12
SEPARATOR = "<<horizon>>"

_NAMES = (
    "Ava",
    "Ben",
    "Cara",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Max",
    "Nia",
    "Oto",
    "Pia",
    "Quin",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Vic",
    "Wes",
    "Xia",
    "Yan",
    "Zoe",
    "Abe",
    "Bea",
    "Cole",
    "Dora",
    "Ezra",
    "Flo",
    "Gil",
    "Hugo",
    "Iris",
    "Jade",
    "Kemi",
    "Lars",
    "Mira",
    "Ned",
)
_ITEMS = ("marbles", "stickers", "apples", "coins", "books", "stamps", "shells", "pencils", "cards", "beads")


@dataclass(frozen=True)
class Node:
    """A quantity: a given value (``op='given'``) or derived from ``parents``."""

    id: int
    owner: str
    item: str
    value: int
    op: str
    parents: tuple[int, ...] = ()
    const: int = 0

    @property
    def label(self) -> str:
        return f"{self.owner}'s {self.item}"


@dataclass(frozen=True)
class Problem:
    id: str
    axis: str
    level: int
    question: str
    answers: tuple[str, ...]
    nodes: tuple[Node, ...] = field(repr=False)
    targets: tuple[int, ...] = ()

    @property
    def gold(self) -> str:
        return SEPARATOR.join(self.answers)


class _Builder:
    def __init__(self, rng: random.Random, item: str) -> None:
        self.rng, self.item, self.nodes = rng, item, []
        self.names = list(_NAMES)
        rng.shuffle(self.names)

    def _owner(self) -> str:
        if not self.names:
            raise ValueError("level too large for the name pool")
        return self.names.pop()

    def given(self) -> int:
        n = Node(len(self.nodes), self._owner(), self.item, self.rng.randint(2, 20), "given")
        self.nodes.append(n)
        return n.id

    def derived(self, parents: list[int]) -> int:
        vals = [self.nodes[p].value for p in parents]
        if len(parents) > 1:
            op, const, value = "sum", 0, sum(vals)
        else:
            v = vals[0]
            choices = ["add"] + (["sub"] if v > 3 else []) + (["mul"] if v <= 40 else [])
            op = self.rng.choice(choices)
            if op == "add":
                const = self.rng.randint(1, 9)
                value = v + const
            elif op == "sub":
                const = self.rng.randint(1, min(9, v - 1))
                value = v - const
            else:
                const = self.rng.choice((2, 3))
                value = v * const
            if value > 200:  # keep numbers readable: fall back to a small subtraction
                op, const = "sub", self.rng.randint(1, 9)
                value = v - const
        n = Node(len(self.nodes), self._owner(), self.item, value, op, tuple(parents), const)
        self.nodes.append(n)
        return n.id

    def chain(self, length: int) -> list[int]:
        ids = [self.given()]
        for _ in range(length - 1):
            ids.append(self.derived([ids[-1]]))
        return ids


def _sentence(n: Node, nodes: list[Node]) -> str:
    if n.op == "given":
        return f"{n.owner} has {n.value} {n.item}."
    p = [nodes[i] for i in n.parents]
    if n.op == "sum":
        who = ", ".join(x.owner for x in p[:-1]) + f" and {p[-1].owner}"
        return f"{n.owner} has as many {n.item} as {who} have together."
    if n.op == "add":
        return f"{n.owner} has {n.const} more {n.item} than {p[0].owner}."
    if n.op == "sub":
        return f"{n.owner} has {n.const} fewer {n.item} than {p[0].owner}."
    return f"{n.owner} has {'twice' if n.const == 2 else 'three times'} as many {n.item} as {p[0].owner}."


def _distractors(b: _Builder, count: int, rng: random.Random) -> list[str]:
    """Half irrelevant facts (other items), half adversarial notes contradicting real facts."""
    out = []
    for i in range(count):
        if i % 2 == 0:
            other = rng.choice([x for x in _ITEMS if x != b.item])
            out.append(f"{rng.choice(_NAMES)} also keeps {rng.randint(2, 90)} {other} in a box.")
        else:
            target = rng.choice(b.nodes)
            wrong = target.value + rng.choice((-1, 1)) * rng.randint(1, 7)
            out.append(f"(Unverified note, known to be unreliable: {target.owner} has {max(wrong, 0)} {b.item}.)")
    return out


def generate(axis: str, level: int, seed: int) -> Problem:
    """One problem; the same (axis, level, seed) always gives the same problem."""
    if axis not in AXES:
        raise ValueError(f"axis: expected one of {list(AXES)}, got {axis!r}")
    if not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"level: expected an integer in [{MIN_LEVEL}, {MAX_LEVEL}], got {level!r}")
    rng = random.Random(f"{axis}-{level}-{seed}")
    b = _Builder(rng, rng.choice(_ITEMS))
    if axis == "depth":
        targets = [b.chain(level)[-1]]
    elif axis in ("horizon", "robustness"):
        targets = b.chain(level + 1)[1:]
    elif axis == "breadth":
        targets = [b.derived([b.given() for _ in range(level)])]
    else:  # parallel
        targets = [b.chain(rng.randint(2, 3))[-1] for _ in range(level)]
    facts = [_sentence(n, b.nodes) for n in b.nodes]
    rng.shuffle(facts)
    if axis == "robustness":
        for note in _distractors(b, level, rng):
            facts.insert(rng.randint(0, len(facts)), note)
    asks = "\n".join(f"{i + 1}. How many {b.item} does {b.nodes[t].owner} have?" for i, t in enumerate(targets))
    plural = "each answer in its own \\boxed{}, in the order asked" if len(targets) > 1 else "the answer in \\boxed{}"
    question = (
        " ".join(facts) + f"\n\nQuestion{'s' if len(targets) > 1 else ''}:\n{asks}\n\n"
        f"Reason step by step, then give {plural}."
    )
    answers = tuple(str(b.nodes[t].value) for t in targets)
    return Problem(f"{axis}-L{level}-s{seed}", axis, level, question, answers, tuple(b.nodes), tuple(targets))


def generate_split(
    axes: list[str] | tuple[str, ...], levels: list[int] | tuple[int, ...], per_level: int, seed: int = 0
) -> list[Problem]:
    """``per_level`` problems for every (axis, level) pair, deterministic in ``seed``."""
    return [generate(a, lv, seed * 100_003 + i) for a in axes for lv in levels for i in range(per_level)]


# --- structural measures, used by tests and analyses -------------------------------------------


def longest_chain(nodes: tuple[Node, ...] | list[Node]) -> int:
    """Number of quantities on the longest dependency path."""
    memo: dict[int, int] = {}
    for n in nodes:  # nodes are created parents-first, so one pass suffices
        memo[n.id] = 1 + max((memo[p] for p in n.parents), default=0)
    return max(memo.values())


def max_in_degree(nodes: tuple[Node, ...] | list[Node]) -> int:
    return max(len(n.parents) for n in nodes)


def components(nodes: tuple[Node, ...] | list[Node]) -> int:
    parent = {n.id: n.id for n in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n in nodes:
        for p in n.parents:
            parent[find(n.id)] = find(p)
    return len({find(n.id) for n in nodes})
