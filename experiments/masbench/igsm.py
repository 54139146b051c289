"""MASBench problems in the authors' iGSM style (Physics of Language Models 2.1), one per (axis, level, seed).

What iGSM is, and what this module builds:

* a four-layer hierarchy of entity categories (``igsm_world``: District ->
  School -> Classroom -> Backpack, Park -> Enclosure -> Animal -> Bone, ...);
  a problem samples three items per layer;
* *instance parameters* "the number of each X's Y" (Y one layer below X), each
  stated once: a number, or an expression of other parameters ("N more than",
  "N times as much as", "the sum of ...", "the difference of ... and ...",
  and their combinations);
* *implicit quantities* (iGSM's abstract parameters) "each X's Z" for Z two or
  more layers down, or a category name ("each Lab's Stationery"): never stated,
  computed by summing products down the hierarchy, and usable as operands and
  as the question;
* arithmetic mod 23; **a parameter the problem never mentions is 0** (the
  authors' convention, written into every question: ``igsm_world.CONVENTION``);
* the question asks one parameter; the solution (:func:`solution`) is the
  topological chain of computations that reach it.

The five MASBench axes on top of it (levels 2..12, as in the published set):

* ``depth``      — the answer's longest dependency chain has exactly ``level``
                   arithmetic operations (:func:`depth`).
* ``horizon``    — ``level`` problems; Problem k uses ``[answer{k-1}]``
                   (R-HORIZON style, the authors' prompt); every answer asked in order.
* ``breadth``    — the asked parameter depends on ``level`` others (in-degree);
                   no parameter in the problem depends on more.
* ``parallel``   — ``level`` independent problems, one answer each.
* ``robustness`` — a haystack of noise lines in which the problem's facts are
                   needles, with ``level`` magic-number needles each attacked by
                   an "Adversarial note" giving a false number; the answers are
                   the ``level`` magic numbers and then the problem's answer.

The dependency graph (:class:`Graph`) is kept with every problem so tests can
check the structure, and ``igsm_solver`` answers from the text alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from experiments.masbench.generator import AXES, MAX_LEVEL, MIN_LEVEL, Problem
from experiments.masbench.igsm_build import Builder, Expr, Key, Sub, finish
from experiments.masbench.igsm_world import CONVENTION, KEY_ADJECTIVES, KEY_NOUNS, NOISE_LINE

ROBUSTNESS_HEADER = "Read the following passage carefully."


@dataclass(frozen=True)
class Graph:
    """Every parameter a problem defines (in definition order, which is topological), its value, and the asks."""

    exprs: dict[Key, Expr]
    values: dict[Key, int]
    targets: tuple[Key, ...]
    """The asked parameters, in the order asked (robustness: the problem's one)."""
    stated: frozenset[Key]
    """Instance parameters written in the text; the rest of ``exprs`` are implicit quantities."""
    magic: tuple[tuple[str, int, int], ...] = ()
    """Robustness: (key, true number, adversarial number) per attacked sub-task, in the order asked."""


@dataclass(frozen=True)
class IgsmProblem(Problem):
    graph: Graph | None = field(default=None, repr=False, compare=True)


# --- rendering -----------------------------------------------------------------------------------


def _name(k: Key, answer_of: dict[Key, int], here: int) -> str:
    if k[0] != here:
        return f"[answer{answer_of[k] + 1}]"
    return f"each {k[1]}'s {k[2]}"


def _body(e: Expr, answer_of: dict[Key, int], here: int) -> str:
    names = [_name(k, answer_of, here) for k in e.refs]
    if e.kind == "const":
        return str(e.const)
    if e.kind == "ref":
        inner = names[0]
    elif e.kind == "diff":
        inner = f"the difference of {names[0]} and {names[1]}"
    else:
        inner = "the sum of " + ", ".join(names[:-1]) + f" and {names[-1]}"
    if e.outer == "add":
        return f"{e.const} more than {inner}"
    if e.outer == "mul":
        return f"{e.const} times as much as {inner}"
    return inner


def _facts(b: Builder, s: Sub, answer_of: dict[Key, int]) -> list[str]:
    facts = [f"The number of each {k[1]}'s {k[2]} equals {_body(b.exprs[k], answer_of, s.index)}." for k in s.mentioned]
    b.rng.shuffle(facts)
    return facts


def _ask(k: Key) -> str:
    return f"How many {k[2]} does {k[1]} have?"


def _multi_text(b: Builder, subs: list[Sub], answer_of: dict[Key, int], horizon: bool) -> str:
    lines = [f"Problem {s.index + 1}: " + " ".join(_facts(b, s, answer_of)) + " " + _ask(s.target) for s in subs]
    fmt = "\n".join(f"Problem {i + 1}: \\boxed{{[answer{i + 1}]}}" for i in range(len(subs)))
    carry = " [answerK] stands for the answer to Problem K." if horizon else ""
    return (
        "\n".join(lines) + f"\n\n{CONVENTION}{carry} Solve every problem in order and give each answer in its "
        f"own \\boxed{{}}, as\n{fmt}"
    )


def _magic_key(rng: random.Random, used: set[str]) -> str:
    while True:
        k = f"{rng.choice(KEY_ADJECTIVES)}-{rng.choice(KEY_NOUNS)}"
        if k not in used:
            used.add(k)
            return k


def _robust_text(b: Builder, s: Sub, magic: list[tuple[str, int, int]]) -> str:
    needles = _facts(b, s, {})
    needles += [f"One of the special magic numbers for {k} is: {true}." for k, true, _ in magic]
    needles += [
        f"Adversarial note: Verify before you take it — the magic number for {k} is {fake}." for k, _, fake in magic
    ]
    b.rng.shuffle(needles)
    lines = [NOISE_LINE] * (2 * len(needles) + 4)
    for n in needles:  # each needle on its own line, between noise lines
        lines.insert(b.rng.randint(1, len(lines) - 1), n)
    asks = ", ".join(f"the magic number for {k}" for k, _, _ in magic)
    t = s.target
    return (
        f"{ROBUSTNESS_HEADER}\n\n" + "\n".join(lines) + "\n\n" + "=" * 60 + f"\nFrom the passage, identify and "
        f"return {asks}, and the number of {t[2]} that {t[1]} has, each wrapped in \\boxed{{}} in this order and "
        f"separated via \\n\\n. {CONVENTION}"
    )


# --- the public generator --------------------------------------------------------------------------


def generate(axis: str, level: int, seed: int) -> IgsmProblem:
    """One iGSM-style problem; the same (axis, level, seed) always gives the same problem."""
    if axis not in AXES:
        raise ValueError(f"axis: expected one of {list(AXES)}, got {axis!r}")
    if not isinstance(level, int) or isinstance(level, bool) or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"level: expected an integer in [{MIN_LEVEL}, {MAX_LEVEL}], got {level!r}")
    rng = random.Random(f"igsm-{axis}-{level}-{seed}")
    magic: list[tuple[str, int, int]] = []
    if axis == "breadth":
        b = Builder(rng, max_in_degree=level)
        s = Sub(b, 0, level + 1 + rng.randint(2, 5))
        for _ in range(rng.randint(1, 3)):
            b.const(s)
        pool = b.operands(s, 1, set())
        while len(pool) < level:
            b.const(s)
            pool = b.operands(s, 1, set())
        refs = rng.sample(pool, level)
        b._materialize(s, refs)
        outer = rng.choice((None, "add", "mul"))
        s.target = b._take(s)
        b.define(s.target, Expr("sum", b.num(1) if outer else 0, tuple(refs), outer))
        subs = [s]
    elif axis == "depth":
        b = Builder(rng)
        s = Sub(b, 0, level + 1 + rng.randint(3, 6))
        for _ in range(rng.randint(1, 3)):
            b.distractor(s)
        s.target = b.chain(s, level)
        subs = [s]
    elif axis in ("parallel", "horizon"):
        b = Builder(rng, max_in_degree=3)
        subs = []
        for i in range(level):
            s = Sub(b, i, rng.randint(5, 7))
            b.distractor(s)
            start = None
            if axis == "horizon" and i > 0:  # Problem i+1 reads [answer i]
                start = b._take(s)
                outer = rng.choice((None, "add", "mul"))
                b.define(start, Expr("ref", b.num(1) if outer else 0, (subs[-1].target,), outer))
            s.target = b.chain(s, rng.randint(2, 3) if start is None else b.depth(start) + rng.randint(1, 2), start)
            subs.append(s)
    else:  # robustness
        b = Builder(rng)
        s = Sub(b, 0, rng.randint(6, 9))
        b.distractor(s)
        s.target = b.chain(s, rng.randint(2, 4))
        subs = [s]
        used: set[str] = set()
        for _ in range(level):
            true = rng.randint(1_000_000, 9_999_999)
            fake = rng.randint(1_000_000, 9_999_999)
            while fake == true:
                fake = rng.randint(1_000_000, 9_999_999)
            magic.append((_magic_key(rng, used), true, fake))
    finish(b, subs)
    targets = tuple(s.target for s in subs)
    answer_of = {t: i for i, t in enumerate(targets)}
    if axis == "robustness":
        question = _robust_text(b, subs[0], magic)
        answers = tuple(str(m[1]) for m in magic) + (str(b.values[targets[0]]),)
    elif len(subs) > 1:
        question = _multi_text(b, subs, answer_of, axis == "horizon")
        answers = tuple(str(b.values[t]) for t in targets)
    else:
        question = (
            " ".join(_facts(b, subs[0], answer_of)) + " " + _ask(targets[0]) + f"\n\n{CONVENTION} "
            "Reason step by step, then give the answer in \\boxed{}."
        )
        answers = (str(b.values[targets[0]]),)
    stated = frozenset(k for s in subs for k in s.mentioned)
    graph = Graph(dict(b.exprs), dict(b.values), targets, stated, tuple(magic))
    return IgsmProblem(f"igsm-{axis}-L{level}-s{seed}", axis, level, question, answers, (), (), graph)


def generate_split(
    axes: list[str] | tuple[str, ...], levels: list[int] | tuple[int, ...], per_level: int, seed: int = 0
) -> list[IgsmProblem]:
    """``per_level`` problems for every (axis, level) pair, deterministic in ``seed``."""
    return [generate(a, lv, seed * 100_003 + i) for a in axes for lv in levels for i in range(per_level)]


# --- the graph's structure and the solution ----------------------------------------------------------


def ancestors(g: Graph, keys: tuple[Key, ...] | list[Key]) -> set[Key]:
    """The parameters needed to compute ``keys`` (themselves included)."""
    out, todo = set(), list(keys)
    while todo:
        k = todo.pop()
        if k not in out:
            out.add(k)
            todo.extend(g.exprs[k].parents)
    return out


def depth(g: Graph, k: Key) -> int:
    """Operations on the longest dependency chain ending at ``k`` (each step counts all its operations)."""
    memo: dict[Key, int] = {}
    for key, e in g.exprs.items():  # definition order is topological
        memo[key] = e.ops + max((memo[p] for p in e.parents), default=0)
    return memo[k]


def solution(g: Graph, k: Key) -> list[str]:
    """The topological chain of computations that reaches ``k``: one line per parameter, its value mod 23."""
    need = ancestors(g, [k])
    lines = []
    for key, e in g.exprs.items():
        if key not in need:
            continue
        if e.kind == "hier":
            rhs = " + ".join(" × ".join(f"{p[1]}'s {p[2]}" for p in t) for t in e.terms)
        else:
            rhs = _body(e, {t: i for i, t in enumerate(g.targets)}, key[0]).replace("each ", "")
        lines.append(f"{key[1]}'s {key[2]} = {rhs} = {g.values[key]}")
    return lines
