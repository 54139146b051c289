"""Iteration-based frameworks: multi-agent Debate and DyLAN.

Each round is one ``ctx.iteration``; each debater's turn is one ``ctx.agent``.
"""
from __future__ import annotations

import re

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import consensus, majority, numbered


class Debate:
    """Du et al. multi-agent debate: answer, read the others, revise; majority at the end."""

    name, family = "debate", "iteration"

    def __init__(self, n_agents: int = 3, rounds: int = 2) -> None:
        self.n_agents, self.rounds = n_agents, rounds

    def _round(self, ctx: MASContext, r: int, previous: list[str]) -> list[str]:
        out = []
        for i in range(self.n_agents):
            if r == 0:
                prompt = ctx.task
            else:
                others = [a for j, a in enumerate(previous) if j != i]
                prompt = (f"{ctx.task}\n\nOther agents' solutions:\n{numbered(others, 'Agent')}\n\nYour previous "
                          f"solution:\n{previous[i]}\n\nUse their reasoning as extra advice and give an updated "
                          "solution.")
            out.append(ctx.agent(f"debater_{i}", r, prompt))
        return out

    def solve(self, ctx: MASContext) -> str:
        answers: list[str] = []
        for r in range(self.rounds):
            answers = ctx.iteration(r, lambda c, r=r, prev=answers: self._round(c, r, prev), numbered)
        return majority(answers)


class DyLAN:
    """DyLAN: layered agent team, a ranker keeps the top-k responses, early stop on consensus."""

    name, family = "dylan", "iteration"

    def __init__(self, n_agents: int = 4, rounds: int = 3, top_k: int = 2) -> None:
        self.n_agents, self.rounds, self.top_k = n_agents, rounds, top_k

    def _rank(self, ctx: MASContext, r: int, answers: list[str]) -> list[str]:
        if len(answers) <= self.top_k:
            return answers
        out = ctx.agent("ranker", r, f"{ctx.task}\n\n{numbered(answers)}\n\nSelect the {self.top_k} best responses. "
                        f"Reply with <top>i,j</top> (response numbers).", system="You rank solutions.")
        m = re.search(r"<top>(.*?)</top>", out, re.DOTALL)
        picks = [int(x) - 1 for x in re.findall(r"\d+", m.group(1))] if m else []
        picks = [p for p in dict.fromkeys(picks) if 0 <= p < len(answers)][: self.top_k]
        if len(picks) < self.top_k:  # unusable ranking: keep the first k, the DyLAN default order
            picks = list(range(self.top_k))
        return [answers[p] for p in picks]

    def _layer(self, ctx: MASContext, r: int, kept: list[str]) -> list[str]:
        if r == 0:
            return [ctx.agent(f"agent_{i}", r, ctx.task) for i in range(self.n_agents)]
        prompt = f"{ctx.task}\n\nSelected responses from the previous layer:\n{numbered(kept)}\n\nGive your solution."
        answers = [ctx.agent(f"agent_{i}", r, prompt) for i in range(self.n_agents)]
        return answers

    def solve(self, ctx: MASContext) -> str:
        answers: list[str] = []
        for r in range(self.rounds):
            kept = self._rank(ctx, r, answers) if answers else []
            answers = ctx.iteration(r, lambda c, r=r, kept=kept: self._layer(c, r, kept), numbered)
            if consensus(answers):
                break
        return majority(answers)
