"""Trace-level tests of each framework's defining mechanism: who saw which messages, who was active, when."""
import itertools
import random
import re

import pytest

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import answer_key
from experiments.mas_prove.frameworks.iteration import ROLES, Debate, DyLAN, importance, parse_scores
from jaxlab.llm import ScriptedClient

TASK = "What is 17 cubed?"


def _ctx(responder, **kw):
    return MASContext(ScriptedClient(responder=responder), TASK, task_id="t", framework="x", **kw)


def test_debate_agents_read_each_others_previous_answers_for_the_authors_rounds():
    counter = itertools.count()
    client_ctx = _ctx(lambda req: f"reply {next(counter)} \\boxed{{{random.Random(req.seed).randint(0, 9)}}}")
    final = Debate().solve(client_ctx)
    reqs = client_ctx.client.requests
    assert len(reqs) == 2 * (1 + 3)  # 2 agents, an answer round and 3 refinement rounds (the authors' CLI)
    steps = client_ctx.steps
    assert [s.round for s in steps] == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(2, 8):  # agent i of round r saw its own and the other agent's round r-1 answers
        r, i = divmod(k, 2)
        own, other = steps[2 * (r - 1) + i].output, steps[2 * (r - 1) + 1 - i].output
        prompt = reqs[k].messages[-1]["content"]
        assert f"ORIGINAL SOLUTION:\n{own}" in prompt and f"OTHER AGENTS' SOLUTIONS:\nAgent {2 - i}:\n{other}" in prompt
    assert final in (steps[6].output, steps[7].output)


def test_dylan_stops_a_round_early_when_two_thirds_agree():
    ctx = _ctx(lambda req: "so \\boxed{4913}")
    assert answer_key(DyLAN().solve(ctx)) == ("4913",)
    trace = ctx.trace["dylan"]
    assert trace["early_stop_round"] == 0 and len(trace["active"][0]) == 3  # floor(2/3*4)+1 agents spoke
    assert len(ctx.client.requests) == 3
    assert trace["importance"] and sum(trace["importance"].values()) == pytest.approx(1.0)


def test_dylan_ranker_decides_who_is_active_in_later_rounds():
    roles = list(ROLES)
    answers = {0: 1, 1: 2, 2: 3, 3: 4}  # no agreement in rounds 0 and 1

    def responder(req):
        system, prompt = req.messages[0]["content"], req.messages[-1]["content"]
        if "rank solutions" in system:  # prefer the responses answering 3 and 1
            shown = re.split(r"Response \d+:\n", prompt.split("\n\nChoose")[0])[1:]
            picks = [k + 1 for k, t in enumerate(shown) if answer_key(t)[0] in ("3", "1")]
            return f"[[{', '.join(map(str, picks))}]]"
        i = next(k for k, role in enumerate(roles) if ROLES[role] in system)
        n_shown = prompt.count("Solution ") - prompt.count("Solutions from")
        rating = f"[[{', '.join(['5' if k == 0 else '1' for k in range(n_shown)])}]] " if n_shown else ""
        return f"{rating}\\boxed{{{answers[i]}}}"

    ctx = _ctx(responder)
    DyLAN().solve(ctx)
    trace = ctx.trace["dylan"]
    assert [len(a) for a in trace["active"]] == [4, 4, 2] and trace["early_stop_round"] is None
    assert sorted(trace["active"][2]) == sorted([roles[0], roles[2]])  # the agents answering 1 and 3
    ranker = [r for r in ctx.client.requests if "rank solutions" in r.messages[0]["content"]]
    assert len(ranker) == 1
    imp = trace["importance"]
    assert imp[roles[1]] < imp[roles[0]] + imp[roles[2]] and all(v >= 0 for v in imp.values())


def test_parse_scores_like_dylan():
    assert parse_scores("text [[5, 0, 10]]", 3) == pytest.approx([0.5, 0.0, 0.5])
    assert parse_scores("no array", 2) == [0.5, 0.5] and parse_scores("[[1, 2]]", 3) == pytest.approx([1 / 3] * 3)


def _paths_reference(rounds, weights, final):
    """Importance by enumerating every path from a node to the last round (slow reference)."""
    last = len(rounds) - 1
    agree = [i for i, t in rounds[last].items() if answer_key(t) == final]
    terminal = {i: (1 / len(agree) if i in agree else 0.0) for i in rounds[last]}

    def through(r, j):
        if r == last:
            return terminal[j]
        return sum(weights[r + 1][i].get(j, 0.0) * through(r + 1, i) for i in rounds[r + 1])

    return [{j: through(r, j) for j in rounds[r]} for r in range(len(rounds))]


@pytest.mark.parametrize("seed", range(5))
def test_importance_matches_path_enumeration(seed):
    rng = random.Random(seed)
    rounds = []
    for r in range(rng.randint(2, 4)):
        active = sorted(rng.sample(range(4), rng.randint(2, 4)))
        rounds.append({i: f"\\boxed{{{rng.randint(0, 2)}}}" for i in active})
    weights = [{}]
    for r in range(1, len(rounds)):
        w = {}
        for i in rounds[r]:
            raw = [rng.random() for _ in rounds[r - 1]]
            w[i] = {j: x / sum(raw) for j, x in zip(rounds[r - 1], raw)}
        weights.append(w)
    final = ("1",)
    got, want = importance(rounds, weights, final), _paths_reference(rounds, weights, final)
    assert all(got[r][j] == pytest.approx(want[r][j]) for r in range(len(rounds)) for j in rounds[r])
