"""Building one iGSM statement: the parameter graph (:class:`Expr` per parameter) and its construction.

A :class:`Sub` is one statement (a domain, three items per layer, the instance parameters it mentions);
the :class:`Builder` defines parameters in a topological order — numbers first, then expressions of
parameters already defined — so the graph is acyclic by construction.  An implicit quantity may be used
only once every instance parameter it sums over is defined (its value is then fixed), and its depth
and in-degree are known before it is used, which is how each axis hits its level exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.masbench.igsm_world import DOMAINS, MOD, Domain

Key = tuple[int, str, str]
"""(sub-problem index, X, Y): "each X's Y" in sub-problem ``index``; Y an item or a category name."""

ITEMS_PER_LAYER = 3


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
        inner = {
            "const": 0,
            "ref": 0,
            "diff": 1,
            "sum": len(self.refs) - 1,
            "hier": len(self.terms) - 1 + sum(len(t) - 1 for t in self.terms),
        }[self.kind]
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


class Sub:
    """One iGSM statement: a domain, three items per layer, the instance parameters it mentions."""

    def __init__(self, b: Builder, index: int, n_mentioned: int) -> None:
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
                zs = cats[lx + 1 :] + [z for lz in range(lx + 2, 4) for z in self.layers[lz]]
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


class Builder:
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

    def const(self, s: Sub) -> Key:
        k = self._take(s)
        self.define(k, Expr("const", self.num()))
        return k

    def _take(self, s: Sub) -> Key:
        left = s.undefined()
        if not left:
            raise AssertionError("sub-problem ran out of parameters to state")
        return self.rng.choice(left)

    def operands(self, s: Sub, max_depth: int, exclude: set[Key]) -> list[Key]:
        """Defined parameters (stated or implicit) of ``s`` no deeper than ``max_depth`` and within the in-degree cap."""
        own = [k for k in self.exprs if k[0] == s.index and k not in exclude and self.depth(k) <= max_depth]
        imp = [
            k
            for k in s.available()
            if k not in exclude
            and k not in self.exprs
            and s.implicit_depth(k) <= max_depth
            and _max_in(s, k) <= self.max_in
        ]
        return own + imp

    def _materialize(self, s: Sub, refs: list[Key]) -> None:
        for r in refs:
            if r not in self.exprs:
                s.use_implicit(r)

    def step(self, s: Sub, cur: Key) -> Key:
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

    def distractor(self, s: Sub) -> Key:
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

    def chain(self, s: Sub, level: int, start: Key | None = None) -> Key:
        """Define parameters until one has exactly ``level`` operations on its longest chain; return it."""
        if start is None:
            imps = [
                k
                for k in s.available()
                if k not in self.exprs and 1 <= s.implicit_depth(k) <= level - 1 and _max_in(s, k) <= self.max_in
            ]
            if imps and self.rng.random() < 0.5:
                start = self.rng.choice(imps)
                s.use_implicit(start)
            else:
                start = self.const(s)
        cur = start
        while self.depth(cur) < level:
            if self.depth(cur) == level - 1 and self.rng.random() < 0.5:
                ends = [
                    k
                    for k in s.available()
                    if k not in self.exprs
                    and s.implicit_depth(k) == level
                    and cur in _closure(s, k)
                    and _max_in(s, k) <= self.max_in
                ]
                if ends:
                    cur = self.rng.choice(ends)
                    s.use_implicit(cur)
                    break
            cur = self.step(s, cur)
        return cur


def _max_in(s: Sub, k: Key) -> int:
    """The largest in-degree among an implicit quantity and the implicit quantities it reads."""
    own = len(Expr("hier", terms=s.terms(k[1], k[2])).parents)
    return max([own] + [_max_in(s, p) for p in _closure(s, k) if p not in s.mentioned_set])


def _closure(s: Sub, k: Key) -> set[Key]:
    """Everything an undefined implicit quantity would read, stated or implicit."""
    out: set[Key] = set()
    for t in s.terms(k[1], k[2]):
        for p in t:
            out.add(p)
            if p not in s.mentioned_set:
                out |= _closure(s, p)
    return out


def finish(b: Builder, subs: list[Sub]) -> None:
    for s in subs:
        while s.undefined():
            b.distractor(s)
