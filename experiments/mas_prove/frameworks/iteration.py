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
from experiments.mas_prove.frameworks.iteration_prompts import (
    DEBATE_DIRECT,
    DEBATE_REFINE,
    DYLAN_AIME_ROLES,
    DYLAN_ROLES,
    debate_others,
    dylan_message,
    dylan_qtype,
    dylan_ranking_message,
    dylan_system,
)


class Debate:
    """Du et al. debate as in MAS-ProVe's ``mas_debate``: every agent answers (the authors' direct prompt), then
    ``rounds`` refinement rounds in which each agent revises its own previous answer given the other agents'
    previous answers; the final response is a random agent's last answer (the authors' ``random.choice``, seeded by
    position here).  Calls carry only a user turn, as the authors' ``call_llm`` sends.

    Defaults are the authors' CLI defaults (``--num-agents 2 --num-rounds 3``).
    """

    name, family = "debate", "iteration"

    def __init__(self, n_agents: int = 2, rounds: int = 3) -> None:
        self.n_agents, self.rounds = n_agents, rounds

    def _round(self, ctx: MASContext, r: int, previous: list[str]) -> list[str]:
        out = []
        for i in range(self.n_agents):
            if r == 0:
                prompt = DEBATE_DIRECT.format(question=ctx.task)
            else:
                prompt = DEBATE_REFINE.format(
                    question=ctx.task, original=previous[i], others=debate_others(previous[:i] + previous[i + 1 :])
                )
            out.append(ctx.agent(f"debater_{i}", r, prompt, system=""))
        return out

    def solve(self, ctx: MASContext) -> str:
        answers: list[str] = []
        for r in range(self.rounds + 1):
            answers = ctx.iteration(r, lambda c, r=r, prev=answers: self._round(c, r, prev), _numbered)
        ctx.trace["debate"] = {"rounds": self.rounds + 1, "agents": self.n_agents}
        return random.Random(ctx.position_seed("final_pick")).choice(answers)


ROLES = DYLAN_ROLES
ARRAY = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
RANKS = re.compile(r"\[([1234567]),\s*([1234567])\]")


def parse_scores(text: str, n: int) -> list[float]:
    """DyLAN's edge weights from the last ``[[s1, ...]]``: integers (anything else 0), s/5 for 0 < s <= 5, 1 above 5,
    else 0, normalised; a wrong count or all zero -> uniform (``LLMNeuron_AIME.activate``)."""
    found = ARRAY.findall(text)
    raw = []
    if found:
        for x in found[-1].replace(" ", "").split(","):
            try:
                raw.append(int(x))
            except ValueError:
                raw.append(0)
    if len(raw) != n:
        raw = [0] * n
    w = [s / 5 if 0 < s <= 5 else (1.0 if s > 5 else 0.0) for s in raw]
    total = sum(w)
    return [x / total for x in w] if total > 0 else [1.0 / n] * n


def parse_ranks(text: str, n: int) -> list[int] | None:
    """The ranker's two picks (``LLM_Neuron.parse_ranks``: the last ``[i, j]``, 1-based, clipped); None: unparseable."""
    found = RANKS.findall(text)
    if not found:
        return None
    return [min(max(int(x) - 1, 0), n - 1) for x in found[-1]]


def importance(
    rounds: list[dict[int, str]], weights: list[dict[int, dict[int, float]]], final: tuple
) -> list[dict[int, float]]:
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
    """DyLAN (Liu et al.) as the MAS-ProVe authors run it on AIME (``llmlp_gen_aime_dylan.py``): four role agents
    in a layered network over four rounds (three at agent level, as the authors' ``_sub`` script).  Within a round the active agents answer one by one in shuffled order,
    each shown the previous round's active replies (shuffled) and asked to rate them ``[[s1, ...]]`` (edge weights);
    the round, and the run, stops as soon as more than 2/3 of the round's agents agree.  From round 2 on, with more
    than 3 agents, the listwise ranker picks the 2 best previous replies and only their agents stay active.  The
    answer is the consensus, else the most frequent among the last active agents; a backward pass gives every agent
    an importance score (``ctx.trace["dylan"]``).

    The released code compares the shuffled *position* with the ranker's agent mask when choosing who is active in
    round >= 2; here the agents named by the ranker are the active ones, which is what the paper describes.  An
    unparseable ranking picks 2 at random (the authors' ``random.sample``, seeded), counted in ``ctx.stats``.
    """

    name, family = "dylan", "iteration"

    def __init__(self, roles: tuple[str, ...] = DYLAN_AIME_ROLES, rounds: int | None = None, top_k: int = 2) -> None:
        """``rounds=None``: the authors' counts, 3 at agent level (``llmlp_gen_aime_dylan_sub.py``) and 4 otherwise
        (``llmlp_gen_aime_dylan.py``)."""
        if rounds is not None and rounds < 3:
            raise ValueError(f"rounds: DyLAN needs >= 3, got {rounds}")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"roles: expected names from {sorted(ROLES)}, got {unknown}")
        if top_k != 2:
            raise ValueError(f"top_k: the authors' listwise ranker picks 2, got {top_k}")
        self.roles, self.rounds, self.top_k = roles, rounds, top_k

    def _rank(self, ctx: MASContext, r: int, previous: dict[int, str]) -> list[int]:
        """The listwise ranker over the previous round's active replies: the agents of the 2 best."""
        order = list(previous)
        random.Random(ctx.position_seed("rank_shuffle", r)).shuffle(order)
        out = ctx.unverified(
            "ranker",
            r,
            dylan_ranking_message([previous[i] for i in order], ctx.task, dylan_qtype(ctx.benchmark)),
            system="",
        )
        picks = parse_ranks(out, len(order))
        if picks is None:
            ctx.stats["dylan_ranker_fallbacks"] += 1
            picks = random.Random(ctx.position_seed("rank_fallback", r)).sample(range(len(order)), 2)
        return sorted({order[p] for p in picks})

    def _round(self, ctx: MASContext, r: int, previous: dict[int, str]) -> tuple:
        """One round (the authors' ``_execute_round_*``, so at iteration level each fork ranks for itself)."""
        if r >= 2 and len(self.roles) > 3:  # only the ranker's picks stay active; 2 replies need no ranking
            mask = self._rank(ctx, r, previous) if len(previous) > self.top_k else sorted(previous)
        else:
            mask = list(range(len(self.roles)))
        order = list(mask)
        random.Random(ctx.position_seed("order", r)).shuffle(order)
        replies: dict[int, str] = {}
        weights: dict[int, dict[int, float]] = {}
        for i in order:
            formers = list(previous)
            random.Random(ctx.position_seed("formers", r, i)).shuffle(formers)
            role = self.roles[i]
            qtype = dylan_qtype(ctx.benchmark)
            replies[i] = ctx.agent(
                role,
                r,
                dylan_message([previous[j] for j in formers], ctx.task, qtype),
                system=dylan_system(role, qtype),
            )
            if formers:
                weights[i] = dict(zip(formers, parse_scores(replies[i], len(formers))))
            if len(replies) > math.floor(2 / 3 * len(mask)):
                counts = Counter(k for k in (answer_key(t) for t in replies.values()) if k)
                if counts and max(counts.values()) > math.floor(2 / 3 * len(mask)):
                    return replies, weights, counts.most_common(1)[0][0]
        return replies, weights, None

    def render(self, r: int, result: tuple) -> str:
        """A round as the authors' round-level hook shows it to the verifier (node ids ``r * n_agents + i``, in
        activation order)."""
        replies, _, consensus = result
        head = f"=== Round {r}{' (Consensus Reached)' if consensus is not None else ''} ===\n"
        return head + "".join(f"Agent {r * len(self.roles) + i}: {t}...\n" for i, t in replies.items())

    def solve(self, ctx: MASContext) -> str:
        rounds: list[dict[int, str]] = []
        weights: list[dict[int, dict[int, float]]] = []
        consensus = None
        n_rounds = self.rounds or (3 if ctx.level == "agent" else 4)
        for r in range(n_rounds):
            previous = rounds[-1] if rounds else {}
            replies, w, consensus = ctx.iteration(
                r, lambda c, r=r, p=dict(previous): self._round(c, r, p), lambda res, r=r: self.render(r, res)
            )
            rounds.append(replies)
            weights.append(w)
            if consensus is not None:
                break
        final_key = consensus if consensus is not None else answer_key(majority(list(rounds[-1].values())))
        imp = importance(rounds, weights, final_key)
        ctx.trace["dylan"] = {
            "active": [[self.roles[i] for i in rnd] for rnd in rounds],
            "early_stop_round": len(rounds) - 1 if consensus is not None else None,
            "importance": {role: sum(rr.get(i, 0.0) for rr in imp) for i, role in enumerate(self.roles)},
            "node_importance": [{self.roles[i]: v for i, v in rr.items()} for rr in imp],
        }
        last = [t for t in rounds[-1].values() if answer_key(t) == final_key]
        return last[0] if last else majority(list(rounds[-1].values()))
