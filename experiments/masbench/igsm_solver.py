"""A slow reference solver for iGSM-style MASBench text: answers from the words alone.

It never sees the generator's graph.  It reads every "The number of each X's Y
equals ..." sentence, parses the expression, and evaluates the asked parameter
by memoised recursion: a stated parameter by its expression, anything else as
an implicit quantity from the world's hierarchy (``igsm_world``: which layer a
name is on, which items a category holds), summing "X's Y" x "Y's Z" over the
world's next layer, where an unmentioned parameter is 0 (the text's rule):
as in iGSM, only stated parameters are edges of the hierarchy, so a term is
read only when a stated path X -> Y -> ... -> Z exists.  All arithmetic mod 23.  Multi-problem text ("Problem k:")
is solved in order with ``[answerK]`` bound to earlier answers; a robustness
passage reads the magic-number needles (never the adversarial notes).
"""

from __future__ import annotations

import re

from experiments.masbench.igsm_world import CATEGORY_ITEMS, CATEGORY_LAYER, DOMAINS, MOD, NAME_LAYER

_FACT = re.compile(r"The number of each (.+?)'s (.+?) equals (.+?)\.(?= |\n|$)")
_ASK = re.compile(r"How many (.+?) does (.+?) have\?")
_PROBLEM = re.compile(r"^Problem (\d+): ", re.MULTILINE)
_NEEDLE = re.compile(r"One of the special magic numbers for ([\w-]+) is: (\d+)\.")
_ROBUST_ASK = re.compile(r"the number of (.+?) that (.+?) has, each wrapped")


class _Statement:
    def __init__(self, text: str, answers: list[int]) -> None:
        self.eqs: dict[tuple[str, str], str] = {}
        for x, y, body in _FACT.findall(text):
            if (x, y) in self.eqs:
                raise ValueError(f"parameter {x}'s {y} is stated twice")
            self.eqs[(x, y)] = body
        self.answers = answers
        self.memo: dict[tuple[str, str], int] = {}
        self.visiting: set[tuple[str, str]] = set()

    def value(self, x: str, y: str) -> int:
        if (x, y) in self.memo:
            return self.memo[(x, y)]
        if (x, y) in self.visiting:
            raise ValueError(f"the statement is circular at {x}'s {y}")
        self.visiting.add((x, y))
        v = self._expr(self.eqs[(x, y)]) if (x, y) in self.eqs else self._implicit(x, y)
        self.visiting.discard((x, y))
        self.memo[(x, y)] = v % MOD
        return self.memo[(x, y)]

    def _implicit(self, x: str, z: str) -> int:
        if x not in NAME_LAYER:
            raise ValueError(f"unknown entity {x!r}")
        dom, lx = NAME_LAYER[x]
        if z in CATEGORY_LAYER:
            zdom, lz = CATEGORY_LAYER[z]
        elif z in NAME_LAYER:
            zdom, lz = NAME_LAYER[z]
        else:
            raise ValueError(f"unknown entity {z!r}")
        if zdom != dom or lz <= lx:
            raise ValueError(f"{x}'s {z}: {z} is not below {x} in the hierarchy")
        if lz == lx + 1:  # an instance parameter (unstated: 0) or the category of the next layer
            return 0 if z in NAME_LAYER else sum(self.value(x, it) for it in CATEGORY_ITEMS[z])
        below = next(d for d in DOMAINS if d.name == dom).layers[lx + 1].items
        return sum(self.value(x, y) * self.value(y, z) for y in below if (x, y) in self.eqs and self._holds(y, z))

    def _holds(self, y: str, z: str) -> bool:
        """Whether the stated parameters connect y down to z at all (else "y's z" is 0 without reading anything)."""
        ly = NAME_LAYER[y][1]
        lz = CATEGORY_LAYER[z][1] if z in CATEGORY_LAYER else NAME_LAYER[z][1]
        if lz == ly + 1:
            return (y, z) in self.eqs if z in NAME_LAYER else any((y, it) in self.eqs for it in CATEGORY_ITEMS[z])
        return any(self._holds(w, z) for (a, w) in self.eqs if a == y)

    def _operand(self, s: str) -> int:
        s = s.strip()
        m = re.fullmatch(r"\[answer(\d+)\]", s)
        if m:
            k = int(m.group(1))
            if not 1 <= k <= len(self.answers):
                raise ValueError(f"{s} refers to a problem not solved yet")
            return self.answers[k - 1]
        m = re.fullmatch(r"each (.+?)'s (.+)", s)
        if not m:
            raise ValueError(f"cannot read operand {s!r}")
        return self.value(m.group(1), m.group(2))

    def _expr(self, body: str) -> int:
        m = re.fullmatch(r"(\d+) more than (.+)", body)
        if m:
            return int(m.group(1)) + self._expr(m.group(2))
        m = re.fullmatch(r"(\d+) times as much as (.+)", body)
        if m:
            return int(m.group(1)) * self._expr(m.group(2))
        if re.fullmatch(r"\d+", body):
            return int(body)
        m = re.fullmatch(r"the sum of (.+)", body)
        if m:
            head, _, last = m.group(1).rpartition(" and ")
            return sum(self._operand(o) for o in head.split(", ")) + self._operand(last)
        m = re.fullmatch(r"the difference of (.+) and (.+)", body)
        if m:
            return self._operand(m.group(1)) - self._operand(m.group(2))
        return self._operand(body)


def solve(text: str) -> list[str]:
    """The answers the text asks for, in order, as decimal strings."""
    if text.startswith("Read the following passage carefully."):
        passage, _, ask = text.rpartition("=" * 60)
        needles = dict(_NEEDLE.findall(passage))
        keys = re.findall(r"the magic number for ([\w-]+)", ask)
        m = _ROBUST_ASK.search(ask)
        if m is None:
            raise ValueError("robustness text: no 'the number of ... that ... has' ask")
        y, x = m.groups()
        return [needles[k] for k in keys] + [str(_Statement(passage, []).value(x, y))]
    problems = text.split("\n\n")[0]  # the format lines after the blank line also start with "Problem k:"
    starts = list(_PROBLEM.finditer(problems))
    if not starts:
        asks = _ASK.findall(text)
        if len(asks) != 1:
            raise ValueError(f"expected one question, found {len(asks)}")
        y, x = asks[0]
        return [str(_Statement(text, []).value(x, y))]
    answers: list[int] = []
    for i, m in enumerate(starts):
        if int(m.group(1)) != i + 1:
            raise ValueError(f"problems out of order: Problem {m.group(1)} at position {i + 1}")
        block = problems[m.end() : starts[i + 1].start() if i + 1 < len(starts) else len(problems)]
        y, x = _ASK.findall(block)[-1]
        answers.append(_Statement(block, answers).value(x, y))
    return [str(a) for a in answers]
