"""Iteration-based frameworks: LLM Debate and DyLAN, as the MAS-ProVe authors run them.

Each round is one ``ctx.iteration`` (the iteration-level hook); each agent
turn is one ``ctx.agent`` (the agent-level hook).  Orders that the authors
shuffle with ``random`` are shuffled here with generators seeded by the
call's position, so runs are reproducible.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import answer_key, majority
from experiments.mas_prove.frameworks.common import numbered as _numbered


class Debate:
    """Du et al. debate as in MAS-ProVe's ``mas_debate``: every agent answers, then ``rounds`` refinement rounds
    in which each agent revises its own answer using the others' answers of the previous round; the final
    response is a random agent's last answer (the authors' ``random.choice``, seeded here).

    Defaults are the authors' CLI defaults (``--num-agents 2 --num-rounds 3``).
    """

    name, family = "debate", "iteration"

    def __init__(self, n_agents: int = 2, rounds: int = 3) -> None:
        self.n_agents, self.rounds = n_agents, rounds

    def _round(self, ctx: MASContext, r: int, previous: list[str]) -> list[str]:
        out = []
        for i in range(self.n_agents):
            if r == 0:
                prompt = f"Solve the math problem step by step.\n\nQUESTION: {ctx.task}"
            else:
                others = "\n\n".join(f"Agent {j + 1}:\n{a}" for j, a in enumerate(previous) if j != i)
                prompt = (f"Using the other agents' solutions as additional information, refine your original "
                          f"solution step by step.\n\nQUESTION: {ctx.task}\n\nORIGINAL SOLUTION:\n{previous[i]}\n\n"
                          f"OTHER AGENTS' SOLUTIONS:\n{others}")
            out.append(ctx.agent(f"debater_{i}", r, prompt))
        return out

    def solve(self, ctx: MASContext) -> str:
        answers: list[str] = []
        for r in range(self.rounds + 1):
            answers = ctx.iteration(r, lambda c, r=r, prev=answers: self._round(c, r, prev), _numbered)
        return random.Random(ctx.position_seed("final_pick")).choice(answers)


ROLES = {
    "Mathematician": "You are a mathematician, strong at arithmetic, games and long chains of reasoning.",
    "AlgebraExpert": "You are an algebra expert: equations, variables and symbol manipulation are your strength.",
    "GeometryWizard": "You are a geometry expert who reasons well about shapes, lengths, angles and proofs.",
    "NumberTheoryScholar": "You are a number theorist: primes, divisibility and patterns of integers.",
}
DEBATE_NOTE = ("This is a debate; explain your reasoning thoroughly in each round. Put the final answer in "
               "\\boxed{}.")
RATE = ("First rate each of the solutions above from 1 (useless) to 5 (excellent) as [[s1, s2, ...]] in the order "
        "given, then give your own updated solution.")
ARRAY = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def parse_scores(text: str, n: int) -> list[float]:
    """DyLAN's edge weights from ``[[s1, ...]]``: s/5 clipped to [0, 1], normalised; unusable -> uniform."""
    found = ARRAY.findall(text)
    raw = []
    if found:
        for x in found[-1].split(","):
            try:
                raw.append(float(x.strip()))
            except ValueError:
                raw.append(0.0)
    if len(raw) != n:
        raw = [0.0] * n
    w = [min(1.0, s / 5) if s > 0 else 0.0 for s in raw]
    total = sum(w)
    return [x / total for x in w] if total > 0 else [1.0 / n] * n


def importance(rounds: list[dict[int, str]], weights: list[dict[int, dict[int, float]]],
               final: tuple) -> list[dict[int, float]]:
    """DyLAN's backward pass: the last round's agents that agree with the final answer share importance 1;
    an earlier agent gets the sum over its successors of (edge weight x successor importance).

    ``rounds[r]`` maps active agent -> reply; ``weights[r][i][j]`` is agent i's (round r) weight on agent j's
    round r-1 reply.
    """
    last = len(rounds) - 1
    agree = [i for i, t in rounds[last].items() if answer_key(t) == final]
    imp = [dict.fromkeys(rnd, 0.0) for rnd in rounds]
    for i in agree:
        imp[last][i] = 1.0 / len(agree)
    for r in range(last - 1, -1, -1):
        for j in rounds[r]:
            imp[r][j] = sum(weights[r + 1][i].get(j, 0.0) * imp[r + 1][i] for i in rounds[r + 1])
    return imp


class DyLAN:
    """DyLAN (Liu et al.) as the MAS-ProVe authors run it on AIME: role agents in a layered network over
    ``rounds`` rounds; within a round agents answer one by one (shuffled) and the round stops early once more
    than 2/3 of the round's agents agree; every agent rates the previous round's replies (edge weights); from
    round 2 on, with more than 3 agents, a listwise ranker picks the ``top_k`` best previous replies and only
    their agents stay active; the answer is the most frequent among the last active agents; a backward pass
    gives every agent an importance score (``ctx.trace["dylan"]``).

    The released code compares the shuffled *position* with the agent mask when choosing who is active in
    round >= 2; here the agents named by the ranker are the active ones, which is what the paper describes.
    """

    name, family = "dylan", "iteration"

    def __init__(self, roles: tuple[str, ...] = tuple(ROLES), rounds: int = 3, top_k: int = 2) -> None:
        if rounds < 3:
            raise ValueError(f"rounds: DyLAN needs >= 3, got {rounds}")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"roles: expected names from {sorted(ROLES)}, got {unknown}")
        self.roles, self.rounds, self.top_k = roles, rounds, top_k

    def _rank(self, ctx: MASContext, r: int, previous: dict[int, str]) -> list[int]:
        """The listwise ranker: the agents whose previous replies are the ``top_k`` best."""
        order = list(previous)
        random.Random(ctx.position_seed("rank_shuffle", r)).shuffle(order)
        body = "\n\n".join(f"Response {k + 1}:\n{previous[i]}" for k, i in enumerate(order))
        out = ctx.agent("ranker", r, f"QUESTION: {ctx.task}\n\n{body}\n\nChoose the {self.top_k} best responses "
                        f"(correct, well reasoned). Reply with their numbers as [[i, j]].",
                        system="You rank solutions to a math problem.")
        found = ARRAY.findall(out)
        picks = [int(x) - 1 for x in re.findall(r"\d+", found[-1])] if found else []
        picks = [p for p in dict.fromkeys(picks) if 0 <= p < len(order)][: self.top_k]
        if len(picks) < self.top_k:  # unusable ranking: keep the first k shown, counted
            ctx.stats["dylan_ranker_fallbacks"] += 1
            picks = list(range(min(self.top_k, len(order))))
        return sorted(order[p] for p in picks)

    def _round(self, ctx: MASContext, r: int, mask: list[int], previous: dict[int, str]) -> tuple:
        order = list(mask)
        random.Random(ctx.position_seed("order", r)).shuffle(order)
        replies: dict[int, str] = {}
        weights: dict[int, dict[int, float]] = {}
        for pos, i in enumerate(order):
            formers = list(previous)
            random.Random(ctx.position_seed("formers", r, i)).shuffle(formers)
            role = self.roles[i]
            if formers:
                shown = "\n\n".join(f"Solution {k + 1}:\n{previous[j]}" for k, j in enumerate(formers))
                prompt = f"QUESTION: {ctx.task}\n\nSolutions from other agents:\n{shown}\n\n{RATE}"
            else:
                prompt = f"QUESTION: {ctx.task}"
            replies[i] = ctx.agent(role, r, prompt, system=f"{ROLES[role]}\n{DEBATE_NOTE}")
            if formers:
                weights[i] = dict(zip(formers, parse_scores(replies[i], len(formers))))
            if pos + 1 > math.floor(2 / 3 * len(mask)):
                counts = Counter(k for k in (answer_key(t) for t in replies.values()) if k)
                if counts and max(counts.values()) > math.floor(2 / 3 * len(mask)):
                    return replies, weights, counts.most_common(1)[0][0]
        return replies, weights, None

    def solve(self, ctx: MASContext) -> str:
        n = len(self.roles)
        rounds: list[dict[int, str]] = []
        weights: list[dict[int, dict[int, float]]] = []
        mask, consensus = list(range(n)), None
        for r in range(self.rounds):
            previous = rounds[-1] if rounds else {}
            if r >= 2 and n > 3:
                mask = self._rank(ctx, r, previous)
            replies, w, consensus = ctx.iteration(
                r, lambda c, r=r, m=list(mask), p=dict(previous): self._round(c, r, m, p),
                lambda res: _numbered(list(res[0].values())))
            rounds.append(replies)
            weights.append(w)
            if consensus is not None:
                break
        final_key = consensus if consensus is not None else answer_key(majority(list(rounds[-1].values())))
        imp = importance(rounds, weights, final_key)
        ctx.trace["dylan"] = {
            "active": [[self.roles[i] for i in rnd] for rnd in rounds],
            "early_stop_round": len(rounds) - 1 if consensus is not None else None,
            "importance": {role: sum(rr.get(i, 0.0) for rr in imp) for i, role in enumerate(self.roles)}}
        last = [t for t in rounds[-1].values() if answer_key(t) == final_key]
        return last[0] if last else majority(list(rounds[-1].values()))
