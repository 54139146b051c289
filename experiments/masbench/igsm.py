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
from experiments.masbench.igsm_world import (CONVENTION, DOMAINS, KEY_ADJECTIVES, KEY_NOUNS, MOD, NOISE_LINE,
                                             Domain)

Key = tuple[int, str, str]
"""(sub-problem index, X, Y): "each X's Y" in sub-problem ``index``; Y an item or a category name."""

ITEMS_PER_LAYER = 3
ROBUSTNESS_HEADER = "Read the following passage carefully."


@dataclass(frozen=True)
class Expr:
    """A parameter's definition.

    ``kind``: ``const`` (a number), ``ref`` (copies one parameter), ``sum``,
    ``diff`` (first minus second), or ``hier`` (an implicit quantity: the sum
    over ``terms`` of the product of each term's parameters).  ``outer``
    wraps the inner value: ``add`` ("``const`` more than ...") or ``mul``
    ("``const`` times as much as ...").
    """

    kind: str
    const: int = 0
    refs: tuple[Key, ...] = ()
    outer: str | None = None
    terms: tuple[tuple[Key, ...], ...] = ()

    @property
    def parents(self) -> tuple[Key, ...]:
        seen = dict.fromkeys(self.refs if self.kind != "hier" else [k for t in self.terms for k in t])
        return tuple(seen)

    @property
    def ops(self) -> int:
        """Arithmetic operations this definition performs (a copy or a number: 0)."""
        inner = {"const": 0, "ref": 0, "diff": 1, "sum": len(self.refs) - 1,
                 "hier": len(self.terms) - 1 + sum(len(t) - 1 for t in self.terms)}[self.kind]
        return inner + (self.outer is not None)

    def value(self, values: dict[Key, int]) -> int:
        if self.kind == "const":
            inner = self.const if self.outer is None else 0
        elif self.kind == "ref":
            inner = values[self.refs[0]]
        elif self.kind == "sum":
            inner = sum(values[k] for k in self.refs)
        elif self.kind == "diff":
            inner = values[self.refs[0]] - values[self.refs[1]]
        else:
            inner = 0
            for t in self.terms:
                prod = 1
                for k in t:
                    prod *= values[k]
                inner += prod
        if self.outer == "add":
            inner += self.const
        elif self.outer == "mul":
            inner *= self.const
        return inner % MOD


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


# --- building one sub-problem -------------------------------------------------------------------

class _Sub:
    """One iGSM statement: a domain, three items per layer, the instance parameters it mentions."""

    def __init__(self, b: "_Builder", index: int, n_mentioned: int) -> None:
        self.b, self.index, rng = b, index, b.rng
        self.domain: Domain = rng.choice(DOMAINS)
        self.layers = [rng.sample(c.items, ITEMS_PER_LAYER) for c in self.domain.layers]
        self.layer_of = {n: i for i, items in enumerate(self.layers) for n in items}
        possible = [(x, y) for i in range(3) for x in self.layers[i] for y in self.layers[i + 1]]
        rng.shuffle(possible)
        if n_mentioned > len(possible):
            raise ValueError(f"an iGSM sub-problem mentions at most {len(possible)} parameters, asked {n_mentioned}")
        self.mentioned = [self.key(x, y) for x, y in possible[:n_mentioned]]
        self.mentioned_set = set(self.mentioned)
        self.target: Key | None = None
        self._terms: dict[tuple[str, str], tuple[tuple[Key, ...], ...]] = {}  # the mention set is fixed: memoise
        self._deps: dict[Key, frozenset[Key]] = {}
        self._implicit: list[Key] | None = None

    def key(self, x: str, y: str) -> Key:
        return (self.index, x, y)

    def undefined(self) -> list[Key]:
        return [k for k in self.mentioned if k not in self.b.exprs]

    def terms(self, x: str, z: str) -> tuple[tuple[Key, ...], ...]:
        """The implicit quantity "each x's z" as a sum of products; () when it is 0 (nothing mentioned)."""
        if (x, z) not in self._terms:
            self._terms[(x, z)] = self._compute_terms(x, z)
        return self._terms[(x, z)]

    def _compute_terms(self, x: str, z: str) -> tuple[tuple[Key, ...], ...]:
        lx = self.layer_of[x]
        cats = [c.name for c in self.domain.layers]
        if z in cats and cats.index(z) == lx + 1:
            return tuple((self.key(x, y),) for y in self.layers[lx + 1] if self.key(x, y) in self.mentioned_set)
        lz = cats.index(z) if z in cats else self.layer_of[z]
        out = []
        for y in self.layers[lx + 1]:
            if self.key(x, y) not in self.mentioned_set:
                continue
            if lz == lx + 2 and z not in cats:
                if self.key(y, z) in self.mentioned_set:
                    out.append((self.key(x, y), self.key(y, z)))
            elif self.terms(y, z):
                out.append((self.key(x, y), self.key(y, z)))
        return tuple(out)

    def implicit(self) -> list[Key]:
        """Every non-zero implicit quantity of this statement."""
        if self._implicit is not None:
            return self._implicit
        cats = [c.name for c in self.domain.layers]
        out = []
        for lx in range(3):
            for x in self.layers[lx]:
                zs = cats[lx + 1:] + [z for lz in range(lx + 2, 4) for z in self.layers[lz]]
                out += [self.key(x, z) for z in zs if self.terms(x, z)]
        self._implicit = out
        return out

    def stated_deps(self, k: Key) -> frozenset[Key]:
        """The instance parameters an implicit quantity is made of (recursively)."""
        if k in self.mentioned_set:
            return frozenset((k,))
        if k not in self._deps:
            self._deps[k] = frozenset(d for t in self.terms(k[1], k[2]) for p in t for d in self.stated_deps(p))
        return self._deps[k]

    def available(self) -> list[Key]:
        """Implicit quantities whose instance parameters are all defined already (so using one adds no cycle)."""
        return [k for k in self.implicit() if all(d in self.b.exprs for d in self.stated_deps(k))]

    def use_implicit(self, k: Key) -> None:
        if k in self.b.exprs:
            return
        ts = self.terms(k[1], k[2])
        for t in ts:
            for p in t:
                if p not in self.mentioned_set:
                    self.use_implicit(p)
        self.b.define(k, Expr("hier", terms=ts))

    def implicit_depth(self, k: Key) -> int:
        if k in self.b.exprs:
            return self.b.depth(k)
        ts = self.terms(k[1], k[2])
        return Expr("hier", terms=ts).ops + max(self.implicit_depth(p) for t in ts for p in t)


class _Builder:
    def __init__(self, rng: random.Random, max_in_degree: int = 4) -> None:
        self.rng, self.max_in = rng, max_in_degree
        self.exprs: dict[Key, Expr] = {}
        self.values: dict[Key, int] = {}
        self._depth: dict[Key, int] = {}

    def define(self, k: Key, e: Expr) -> None:
        if k in self.exprs:
            raise AssertionError(f"{k} defined twice")
        self.exprs[k] = e
        self.values[k] = e.value(self.values)
        self._depth[k] = e.ops + max((self._depth[p] for p in e.parents), default=0)

    def depth(self, k: Key) -> int:
        return self._depth[k]

    def num(self, lo: int = 0) -> int:
        return self.rng.randint(lo, MOD - 1)

    def const(self, s: _Sub) -> Key:
        k = self._take(s)
        self.define(k, Expr("const", self.num()))
        return k

    def _take(self, s: _Sub) -> Key:
        left = s.undefined()
        if not left:
            raise AssertionError("sub-problem ran out of parameters to state")
        return self.rng.choice(left)

    def operands(self, s: _Sub, max_depth: int, exclude: set[Key]) -> list[Key]:
        """Defined parameters (stated or implicit) of ``s`` no deeper than ``max_depth`` and within the in-degree cap."""
        own = [k for k in self.exprs if k[0] == s.index and k not in exclude and self.depth(k) <= max_depth]
        imp = [k for k in s.available() if k not in exclude and k not in self.exprs
               and s.implicit_depth(k) <= max_depth and _max_in(s, k) <= self.max_in]
        return own + imp

    def _materialize(self, s: _Sub, refs: list[Key]) -> None:
        for r in refs:
            if r not in self.exprs:
                s.use_implicit(r)

    def step(self, s: _Sub, cur: Key) -> Key:
        """A new stated parameter one operation deeper than ``cur``, built on it."""
        k = self._take(s)
        d = self.depth(cur)
        others = self.operands(s, d, {cur, k})
        shape = self.rng.choice(("add", "mul", "sum", "diff") if others else ("add", "mul"))
        if shape in ("add", "mul"):
            e = Expr("ref", self.num(1), (cur,), shape)
        else:
            other = self.rng.choice(others)
            self._materialize(s, [other])
            refs = (cur, other) if self.rng.random() < 0.5 else (other, cur)
            e = Expr(shape, refs=refs)
        self.define(k, e)
        return k

    def distractor(self, s: _Sub) -> Key:
        """A stated parameter the asked one does not need: a number, or an expression of defined ones."""
        k = self._take(s)
        pool = self.operands(s, 99, {k})
        if not pool or self.rng.random() < 0.35:
            self.define(k, Expr("const", self.num()))
            return k
        n = min(len(pool), self.rng.randint(1, min(3, self.max_in)))
        refs = self.rng.sample(pool, n)
        self._materialize(s, refs)
        if n == 1:
            e = Expr("ref", self.num(1), tuple(refs), self.rng.choice((None, "add", "mul")))
            if e.outer is None:
                e = Expr("ref", refs=tuple(refs))
        elif n == 2 and self.rng.random() < 0.5:
            e = Expr("diff", self.num(1), tuple(refs), self.rng.choice((None, "add", "mul")))
        else:
            e = Expr("sum", self.num(1), tuple(refs), self.rng.choice((None, "add", "mul")))
        self.define(k, e if e.outer else Expr(e.kind, 0, e.refs))
        return k

    def chain(self, s: _Sub, level: int, start: Key | None = None) -> Key:
        """Define parameters until one has exactly ``level`` operations on its longest chain; return it."""
        if start is None:
            imps = [k for k in s.available() if k not in self.exprs and 1 <= s.implicit_depth(k) <= level - 1
                    and _max_in(s, k) <= self.max_in]
            if imps and self.rng.random() < 0.5:
                start = self.rng.choice(imps)
                s.use_implicit(start)
            else:
                start = self.const(s)
        cur = start
        while self.depth(cur) < level:
            if self.depth(cur) == level - 1 and self.rng.random() < 0.5:
                ends = [k for k in s.available() if k not in self.exprs and s.implicit_depth(k) == level
                        and cur in _closure(s, k) and _max_in(s, k) <= self.max_in]
                if ends:
                    cur = self.rng.choice(ends)
                    s.use_implicit(cur)
                    break
            cur = self.step(s, cur)
        return cur


def _max_in(s: _Sub, k: Key) -> int:
    """The largest in-degree among an implicit quantity and the implicit quantities it reads."""
    own = len(Expr("hier", terms=s.terms(k[1], k[2])).parents)
    return max([own] + [_max_in(s, p) for p in _closure(s, k) if p not in s.mentioned_set])


def _closure(s: _Sub, k: Key) -> set[Key]:
    """Everything an undefined implicit quantity would read, stated or implicit."""
    out: set[Key] = set()
    for t in s.terms(k[1], k[2]):
        for p in t:
            out.add(p)
            if p not in s.mentioned_set:
                out |= _closure(s, p)
    return out


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


def _facts(b: _Builder, s: _Sub, answer_of: dict[Key, int]) -> list[str]:
    facts = [f"The number of each {k[1]}'s {k[2]} equals {_body(b.exprs[k], answer_of, s.index)}."
             for k in s.mentioned]
    b.rng.shuffle(facts)
    return facts


def _ask(k: Key) -> str:
    return f"How many {k[2]} does {k[1]} have?"


def _finish(b: _Builder, subs: list[_Sub]) -> None:
    for s in subs:
        while s.undefined():
            b.distractor(s)


def _multi_text(b: _Builder, subs: list[_Sub], answer_of: dict[Key, int], horizon: bool) -> str:
    lines = [f"Problem {s.index + 1}: " + " ".join(_facts(b, s, answer_of)) + " " + _ask(s.target) for s in subs]
    fmt = "\n".join(f"Problem {i + 1}: \\boxed{{[answer{i + 1}]}}" for i in range(len(subs)))
    carry = " [answerK] stands for the answer to Problem K." if horizon else ""
    return ("\n".join(lines) + f"\n\n{CONVENTION}{carry} Solve every problem in order and give each answer in its "
            f"own \\boxed{{}}, as\n{fmt}")


def _magic_key(rng: random.Random, used: set[str]) -> str:
    while True:
        k = f"{rng.choice(KEY_ADJECTIVES)}-{rng.choice(KEY_NOUNS)}"
        if k not in used:
            used.add(k)
            return k


def _robust_text(b: _Builder, s: _Sub, magic: list[tuple[str, int, int]]) -> str:
    needles = _facts(b, s, {})
    needles += [f"One of the special magic numbers for {k} is: {true}." for k, true, _ in magic]
    needles += [f"Adversarial note: Verify before you take it — the magic number for {k} is {fake}."
                for k, _, fake in magic]
    b.rng.shuffle(needles)
    lines = [NOISE_LINE] * (2 * len(needles) + 4)
    for n in needles:  # each needle on its own line, between noise lines
        lines.insert(b.rng.randint(1, len(lines) - 1), n)
    asks = ", ".join(f"the magic number for {k}" for k, _, _ in magic)
    t = s.target
    return (f"{ROBUSTNESS_HEADER}\n\n" + "\n".join(lines) + "\n\n" + "=" * 60 + f"\nFrom the passage, identify and "
            f"return {asks}, and the number of {t[2]} that {t[1]} has, each wrapped in \\boxed{{}} in this order and "
            f"separated via \\n\\n. {CONVENTION}")


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
        b = _Builder(rng, max_in_degree=level)
        s = _Sub(b, 0, level + 1 + rng.randint(2, 5))
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
        b = _Builder(rng)
        s = _Sub(b, 0, level + 1 + rng.randint(3, 6))
        for _ in range(rng.randint(1, 3)):
            b.distractor(s)
        s.target = b.chain(s, level)
        subs = [s]
    elif axis in ("parallel", "horizon"):
        b = _Builder(rng, max_in_degree=3)
        subs = []
        for i in range(level):
            s = _Sub(b, i, rng.randint(5, 7))
            b.distractor(s)
            start = None
            if axis == "horizon" and i > 0:  # Problem i+1 reads [answer i]
                start = b._take(s)
                outer = rng.choice((None, "add", "mul"))
                b.define(start, Expr("ref", b.num(1) if outer else 0, (subs[-1].target,), outer))
            s.target = b.chain(s, rng.randint(2, 3) if start is None else b.depth(start) + rng.randint(1, 2), start)
            subs.append(s)
    else:  # robustness
        b = _Builder(rng)
        s = _Sub(b, 0, rng.randint(6, 9))
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
    _finish(b, subs)
    targets = tuple(s.target for s in subs)
    answer_of = {t: i for i, t in enumerate(targets)}
    if axis == "robustness":
        question = _robust_text(b, subs[0], magic)
        answers = tuple(str(m[1]) for m in magic) + (str(b.values[targets[0]]),)
    elif len(subs) > 1:
        question = _multi_text(b, subs, answer_of, axis == "horizon")
        answers = tuple(str(b.values[t]) for t in targets)
    else:
        question = (" ".join(_facts(b, subs[0], answer_of)) + " " + _ask(targets[0]) + f"\n\n{CONVENTION} "
                    "Reason step by step, then give the answer in \\boxed{}.")
        answers = (str(b.values[targets[0]]),)
    stated = frozenset(k for s in subs for k in s.mentioned)
    graph = Graph(dict(b.exprs), dict(b.values), targets, stated, tuple(magic))
    return IgsmProblem(f"igsm-{axis}-L{level}-s{seed}", axis, level, question, answers, (), (), graph)


def generate_split(axes: list[str] | tuple[str, ...], levels: list[int] | tuple[int, ...], per_level: int,
                   seed: int = 0) -> list[IgsmProblem]:
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
