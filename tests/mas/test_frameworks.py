"""Trace-level tests of each framework's defining mechanism: who saw which messages, who was active, when."""

import random
import re

import numpy as np
import pytest

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.common import answer_key
from experiments.mas_prove.frameworks.iteration import ROLES, Debate, DyLAN, importance, parse_ranks, parse_scores
from experiments.mas_prove.frameworks.iteration_prompts import (
    DEBATE_DIRECT,
    DEBATE_REFINE,
    DYLAN_AIME_ROLES,
    dylan_message,
    dylan_qtype,
    dylan_system,
)
from jaxlab.llm import ScriptedClient

TASK = "What is 17 cubed?"


def _ctx(responder, **kw):
    return MASContext(ScriptedClient(responder=responder), TASK, task_id="t", framework="x", **kw)


def _seeded(req):
    return f"reply seed={req.seed} <answer>{random.Random(req.seed).randint(0, 9)}</answer>"


def test_debate_agents_read_each_others_previous_answers_for_the_authors_rounds():
    ctx = _ctx(_seeded)
    final = Debate().solve(ctx)
    reqs, steps = ctx.client.requests, ctx.steps
    assert len(reqs) == 2 * (1 + 3)  # 2 agents, an answer round and 3 refinement rounds (the authors' CLI)
    assert all(len(r.messages) == 1 and r.messages[0]["role"] == "user" for r in reqs)  # no system turn
    assert [(s.agent, s.round) for s in steps] == [(f"debater_{i}", r) for r in range(4) for i in range(2)]
    assert [r.messages[0]["content"] for r in reqs[:2]] == [DEBATE_DIRECT.format(question=TASK)] * 2
    for k in range(2, 8):  # agent i of round r saw its own and the other agent's round r-1 answers, nothing else
        r, i = divmod(k, 2)
        own, other = steps[2 * (r - 1) + i].output, steps[2 * (r - 1) + 1 - i].output
        assert reqs[k].messages[0]["content"] == DEBATE_REFINE.format(
            question=TASK, original=own, others=f"Agent 0: {other}"
        )
    assert final in (steps[6].output, steps[7].output)
    chosen = set()  # the final pick is a seeded random agent of the last round: across seeds both get picked
    for s in range(12):
        c = _ctx(_seeded, seed=s)
        out = Debate().solve(c)
        chosen.add([st.output for st in c.steps[6:]].index(out))
    assert chosen == {0, 1}


def test_debate_iteration_level_keeps_the_chosen_rounds_and_the_next_round_reads_them():
    class Third:  # a verifier that always prefers candidate 3
        def rank(self, task, contexts):
            return [2, 0, 1]

    ctx = _ctx(_seeded, verifier=Third(), level="iteration")
    Debate().solve(ctx)
    assert [v["where"] for v in ctx.verifications] == [f"round {r}" for r in range(4)]
    assert all(v["chosen"] == 2 and v["n"] == 3 for v in ctx.verifications)
    assert len(ctx.client.requests) == 3 * 8  # 3 forks of every round
    for s in ctx.steps:  # every kept step is fork 2's reply at that position ...
        seed = ctx.position_seed("fork", s.round, 2, s.agent, s.round, 0)
        assert s.output == _seeded(type("R", (), {"seed": seed})())
    for s in ctx.steps[2:]:  # ... and the next round was prompted with the kept (not a discarded) answers
        prev = [p.output for p in ctx.steps if p.round == s.round - 1]
        assert all(p in s.prompt for p in prev)


def _dylan_responder(calls):
    """Role i answers i+1 in rounds 0-2 and 3 in round 3; rates solutions answering 3 with 5, others 1; the ranker
    keeps the solutions answering 1 and 3.  Every reply carries a unique tag so a test can see who read it."""
    roles = list(DYLAN_AIME_ROLES)

    def responder(req):
        prompt = req.messages[-1]["content"]
        shown = re.findall(r"(?:Agent s|S)olution \d+: ```(.*?)```", prompt, re.S)
        if "Please choose the best 2 solutions" in prompt:
            calls.append(("ranker", prompt))
            picks = [k + 1 for k, t in enumerate(shown) if answer_key(t)[0] in ("1", "3")]
            return f"I keep these. [[{', '.join(map(str, picks))}]]"
        i = next(k for k, role in enumerate(roles) if ROLES[role] in req.messages[0]["content"])
        r = sum(1 for c in calls if c[0] == i)
        calls.append((i, prompt))
        rating = f" [[{', '.join('5' if answer_key(t)[0] == '3' else '1' for t in shown)}]]" if shown else ""
        return f"<{roles[i]} r{r}> <answer>{3 if r == 3 else i + 1}</answer>{rating}"

    return responder


def test_dylan_uses_its_math_prompts_off_aime_with_the_same_mechanism():
    calls = []
    ctx = _ctx(_dylan_responder(calls), benchmark="math500")
    assert answer_key(DyLAN().solve(ctx)) == ("3",) and ctx.trace["dylan"]["early_stop_round"] == 3
    reqs = ctx.client.requests
    assert not any("AIME" in m["content"] for r in reqs for m in r.messages)
    agents = [r for r in reqs if len(r.messages) == 2]
    assert all(
        r.messages[0]["content"].endswith(
            "\nIt's a debate. Explain your reasons at each round thoroughly.\n"
            "Follow the given examples and answer the mathematics problem."
        )
        for r in agents
    )
    assert agents[0].messages[1]["content"] == f"Please solve the problem below.\nProblem: {TASK}\nAnswer:"
    later = agents[4].messages[1]["content"]
    assert (
        later.startswith(
            "Follow the given examples and answer the mathematics problem.\n\nPlease solve the problem below."
        )
        and "Agent solution 4: ```" in later
        and later.endswith("Put all 4 scores in the form like [[1, 5, 2, ...]].")
    )
    (ranker,) = [r for r in reqs if len(r.messages) == 1]
    assert ranker.messages[0]["content"].endswith(
        "Please choose the best 2 solutions and think step by step. Put "
        "your answer in the form like [1,2] or [3,4] at the end of your "
        "response."
    )
    assert dylan_qtype("aime25") == "aime_qa" and dylan_qtype("gsm8k") == "math_exp"


def test_dylan_roles_ranker_consensus_and_importance_trace():
    calls = []
    ctx = _ctx(_dylan_responder(calls))
    answer = DyLAN().solve(ctx)
    roles, trace = list(DYLAN_AIME_ROLES), ctx.trace["dylan"]
    assert answer_key(answer) == ("3",) and trace["early_stop_round"] == 3
    assert [sorted(a) for a in trace["active"]] == [
        sorted(roles),
        sorted(roles),
        sorted([roles[0], roles[2]]),
        sorted([roles[0], roles[2]]),
    ]
    reqs = ctx.client.requests
    agents = [r for r in reqs if len(r.messages) == 2]
    assert all(
        r.messages[0]["content"]
        == dylan_system(roles[next(k for k in range(4) if ROLES[roles[k]] in r.messages[0]["content"])])
        for r in agents
    )
    steps = {(s.agent, s.round): s for s in ctx.steps}
    replies = {r: [s.output for s in ctx.steps if s.round == r and s.agent != "ranker"] for r in range(4)}
    for (agent, r), s in steps.items():
        if agent == "ranker":
            continue
        if r == 0:
            assert s.prompt == dylan_message([], TASK)
        else:  # shown exactly the previous round's active replies: nothing older, nothing inactive
            shown = re.findall(r"Solution \d+: ```(.*?)```", s.prompt, re.S)
            assert sorted(shown) == sorted(replies[r - 1])
    rankers = [r for r in reqs if "Please choose the best 2" in r.messages[-1]["content"]]
    assert len(rankers) == 1 and len(rankers[0].messages) == 1  # round 2 only (round 3 has 2 replies to keep)
    assert not any(s.agent == "ranker" for s in ctx.steps)  # the ranker is no trajectory step, never verified
    ranked = re.findall(r"Solution \d+: ```(.*?)```", rankers[0].messages[0]["content"], re.S)
    assert sorted(ranked) == sorted(replies[1])
    # 2/3 consensus inside round 3: both active agents agree after the second reply
    assert len(replies[3]) == 2
    node = trace["node_importance"]
    assert node[3] == {roles[0]: 0.5, roles[2]: 0.5}
    # round 3 rated the round-2 solution answering 3 at 5 and the one answering 1 at 1: weights 5/6 and 1/6
    assert node[2][roles[2]] == pytest.approx(5 / 6) and node[2][roles[0]] == pytest.approx(1 / 6)
    # round 2's agents rated round 1's four solutions [1, 1, 5, 1] (answer 3 is role 2's): weights /8, importance
    # summed over both round-2 readers (5/6 + 1/6 = 1)
    assert node[1] == pytest.approx({roles[0]: 1 / 8, roles[1]: 1 / 8, roles[2]: 5 / 8, roles[3]: 1 / 8})
    assert trace["importance"][roles[2]] > trace["importance"][roles[0]] > trace["importance"][roles[1]] > 0


def test_dylan_stops_a_round_early_when_two_thirds_agree():
    ctx = _ctx(lambda req: "so <answer>4913</answer>")
    assert answer_key(DyLAN().solve(ctx)) == ("4913",)
    trace = ctx.trace["dylan"]
    assert trace["early_stop_round"] == 0 and len(trace["active"][0]) == 3  # floor(2/3*4)+1 agents spoke
    assert len(ctx.client.requests) == 3
    assert trace["importance"] and sum(trace["importance"].values()) == pytest.approx(1.0)


def test_dylan_unparseable_ranking_samples_two_agents_and_counts_it():
    def responder(req):
        if "choose the best 2" in req.messages[-1]["content"]:
            return "no idea"
        i = next(k for k, role in enumerate(DYLAN_AIME_ROLES) if ROLES[role] in req.messages[0]["content"])
        return f"<answer>{i}</answer>"

    ctx = _ctx(responder)
    DyLAN().solve(ctx)
    assert ctx.stats["dylan_ranker_fallbacks"] == 1 and [len(a) for a in ctx.trace["dylan"]["active"]] == [4, 4, 2, 2]
    assert (
        parse_ranks("pick [[2, 7]]", 4) == [1, 3]
        and parse_ranks("[[2, 9]]", 4) is None
        and parse_ranks("[[1,2]] then [3, 4]", 4) == [2, 3]
    )


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
    for _ in range(rng.randint(2, 4)):
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


from experiments.mas_prove.frameworks.graph import GENERATE, AFlow, MaAS, load_workflow, validate_workflow  # noqa: E402
from experiments.mas_prove.frameworks.graph_prompts import DETAILED_SOLUTION_PROMPT, REFINE_ANSWER_PROMPT  # noqa: E402
from experiments.mas_prove.frameworks.maas_controller import NAMES, Controller, threshold_sample  # noqa: E402

CUBE_CODE = "```python\ndef solve():\n    return 17 ** 3\n```"


def _aflow_model(review="FAIL: 4913 is right but the explanation skips a step", code=CUBE_CODE):
    def responder(req):
        system, prompt = req.messages[0]["content"], req.messages[-1]["content"]
        if "Python programmer" in system:
            return code if "The result of the error from the code" not in prompt else CUBE_CODE
        if "for consistency" in system:  # pick the solution that carries the code's output
            letters = re.findall(
                r"^([A-Z]): \n(.*?)(?=^[A-Z]: \n|\Z)", prompt.split("as follows:\n", 1)[1], re.S | re.M
            )
            pick = next((x for x, body in letters if "4913" in body), "A")
            return f"All but {pick} disagree.<solution_letter>{pick}</solution_letter>"
        if "strict reviewer" in system:
            return review
        if "Review feedback" in prompt:
            return "revised: 17^3 = 4913, so \\boxed{4913}"
        return "guess \\boxed{1000}"

    return responder


def test_aflow_runs_its_workflow_graph_with_programmer_ensemble_and_review():
    ctx = _ctx(_aflow_model())
    final = AFlow().solve(ctx)
    names = [s.agent for s in ctx.steps]
    assert names == ["Custom", "Custom", "Custom", "Programmer", "ScEnsemble", "Review", "Revise"]
    assert ctx.client.requests[0].messages[-1]["content"] == GENERATE + TASK  # the authors' Custom: instruction + input
    code_prompt = ctx.client.requests[3].messages[-1]["content"]
    assert (
        code_prompt.startswith(
            "\nYou are a professional Python programmer. Your task is to write complete, self-contained code"
        )
        and f"Problem description: {TASK}\n" in code_prompt
    )
    ensemble = ctx.client.requests[4].messages[-1]["content"]
    assert ensemble.startswith(f"\nGiven the question described as follows: {TASK}\nSeveral solutions have been")
    assert "D: \nCode output: 4913\n\n\n" in ensemble  # the sandbox ran the generated code; no model wrote 4913
    revise = ctx.client.requests[6].messages[-1]["content"]
    assert "FAIL: 4913 is right" in revise and "Code output: 4913" in revise  # the review's feedback reaches Revise
    assert final == "revised: 17^3 = 4913, so \\boxed{4913}"


def test_aflow_review_pass_skips_the_revision_and_programmer_retries_with_the_error():
    ctx = _ctx(_aflow_model(review="PASS", code="```python\ndef solve():\n    return 1 / 0\n```"))
    assert AFlow().solve(ctx) == "Code output: 4913"
    names = [s.agent for s in ctx.steps]
    assert names.count("Programmer") == 2 and "Revise" not in names
    retry = [r for r in ctx.client.requests if "The result of the error from the code" in r.messages[-1]["content"]]
    assert len(retry) == 1 and "ZeroDivisionError" in retry[0].messages[-1]["content"]


def test_workflows_load_as_data_and_bad_graphs_name_the_node(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text('{"nodes": [{"id": "a", "op": "AnswerGenerate"}, {"id": "b", "op": "SelfRefine", "in": ["a"]}]}')
    ctx = _ctx(lambda req: "\\boxed{4913}")
    assert AFlow(load_workflow(path)).solve(ctx) == "\\boxed{4913}" and [s.agent for s in ctx.steps] == [
        "AnswerGenerate",
        "SelfRefine",
    ]
    with pytest.raises(ValueError, match="node 'x': op"):
        validate_workflow([{"id": "x", "op": "Magic"}])
    with pytest.raises(ValueError, match="node 'b': in: \\['zz'\\]"):
        validate_workflow([{"id": "a", "op": "Custom"}, {"id": "b", "op": "Review", "in": ["zz"]}])


class _FixedPlan(Controller):
    def __init__(self, plan):
        super().__init__()
        self.plan = plan

    def sample(self, query, seed):
        return self.plan


def test_maas_executes_the_controllers_layers_in_order():
    ctx = _ctx(_aflow_model())
    plan = [["GenerateCoT", "Programmer"], ["ScEnsemble"], ["SelfRefine"], ["EarlyStop"]]
    MaAS(_FixedPlan(plan)).solve(ctx)
    assert ctx.trace["maas"]["plan"] == plan
    rounds = [(s.round, s.agent) for s in ctx.steps]
    assert rounds == [
        (0, "Programmer"),
        (0, "Custom"),
        (1, "GenerateCoT"),
        (1, "Programmer"),
        (2, "ScEnsemble"),
        (3, "SelfRefine"),
        (5, "ScEnsemble"),
    ]  # 2 left: a final ensemble
    prompts = [r.messages[-1]["content"] for r in ctx.client.requests]
    assert prompts[1] == REFINE_ANSWER_PROMPT + f"{TASK}\nCode output: 4913"  # the authors' graph, their prompts
    assert prompts[2] == DETAILED_SOLUTION_PROMPT + TASK


def test_maas_controller_learns_which_operator_pays():
    ctl = Controller(seed=1)
    queries = [f"problem {i}: compute a big power" for i in range(4)]

    def rate(c):
        return sum(uses(c.sample(q, 10_000 + k)) for q in queries for k in range(25)) / 100

    def uses(plan):
        return any("Programmer" in layer for layer in plan)

    before = rate(ctl)
    curve = ctl.train(queries, lambda q, plan: float(uses(plan)) - 0.02 * sum(map(len, plan)), 100)
    after = rate(ctl)
    assert before < 0.6 and after > 0.9 and sum(curve[-20:]) > sum(curve[:20])
    plan = ctl.sample(queries[0], 3)
    assert plan[0][0] in ("Generate", "GenerateCoT", "MultiGenerateCoT") and all(n in NAMES for l in plan for n in l)


@pytest.mark.parametrize("seed", range(20))
def test_threshold_sampling_reaches_the_threshold_without_repeats(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(7))
    picked = threshold_sample(probs, rng, 0.3)
    assert len(set(picked)) == len(picked)
    assert probs[picked].sum() >= 0.3 and (len(picked) == 1 or probs[picked[:-1]].sum() < 0.3)


def test_controller_save_load_round_trip(tmp_path):
    a, b = Controller(seed=0), Controller(seed=5)
    a.save(tmp_path / "c.npz")
    assert b.load(tmp_path / "c.npz").sample("q", 7) == a.sample("q", 7)
    assert np.allclose(b.probs("q", 1, "Generate"), a.probs("q", 1, "Generate"))


@pytest.mark.parametrize("level,rankers", [("agent", 1), ("iteration", 3)])
def test_dylan_ranker_is_verified_with_its_round_never_on_its_own(level, rankers):
    class First:
        def rank(self, task, contexts):
            return list(range(len(contexts)))

    def responder(req):  # role i always answers i + 1: no consensus, so round 2 needs the ranker
        if "Please choose the best 2" in req.messages[-1]["content"]:
            return "[[1, 3]]"
        return f"<answer>{next(k for k, role in enumerate(DYLAN_AIME_ROLES) if ROLES[role] in req.messages[0]['content'])}</answer>"

    ctx = _ctx(responder, verifier=First(), level=level)
    DyLAN().solve(ctx)
    assert [len(a) for a in ctx.trace["dylan"]["active"]] == ([4, 4, 2] if level == "agent" else [4, 4, 2, 2])
    asked = [r for r in ctx.client.requests if "Please choose the best 2" in r.messages[-1]["content"]]
    assert len(asked) == rankers  # agent level: one ranker call; iteration level: each fork of round 2 ranks
    assert not any("ranker" in v["where"] for v in ctx.verifications)
    if level == "iteration":  # the verifier sees a round as the authors' hook renders it
        seen = []
        ctx = _ctx(
            responder,
            verifier=type("Spy", (), {"rank": lambda self, t, cs: seen.append(cs) or [0, 1, 2]})(),
            level=level,
            strategy="none",
        )
        DyLAN().solve(ctx)
        assert seen[1][0].startswith("\n=== Round 1 ===\nAgent ") and seen[1][0].count("...\n") == 4
        assert sorted(int(x) for x in re.findall(r"Agent (\d+): ", seen[1][0])) == [4, 5, 6, 7]


class _FixedProbs(Controller):
    """Layer 0 draws from ``first``; later layers always draw EarlyStop (so a plan that goes on has 2 layers)."""

    def __init__(self, first):
        super().__init__()
        self.first = first

    def probs(self, query, layer, prev=None):
        p = np.zeros(len(NAMES))
        for name, v in (self.first if layer == 0 else {"EarlyStop": 1.0}).items():
            p[NAMES.index(name)] = v
        return p


def test_controller_layer_zero_rule_is_maas():
    plan, drawn = _FixedProbs({"Programmer": 1.0}).sample_with_choices("q", 0)
    assert drawn[0] == ["Programmer"] and plan == [["Generate"], ["EarlyStop"]]  # replaced, and the plan goes on
    plan, drawn = _FixedProbs({"EarlyStop": 1.0}).sample_with_choices("q", 0)
    assert drawn == [["EarlyStop"]] and plan == [["Generate"]]  # replaced, and the plan ends
    firsts = {
        tuple(_FixedProbs({"SelfRefine": 0.25, "GenerateCoT": 0.75}).sample_with_choices("q", s)[1][0])
        for s in range(20)
    }
    assert firsts == {("GenerateCoT",), ("SelfRefine", "GenerateCoT")}  # both draw orders occur ...
    assert all(
        _FixedProbs({"SelfRefine": 0.25, "GenerateCoT": 0.75}).sample_with_choices("q", s)[0][0][0] == "GenerateCoT"
        for s in range(20)
    )  # ... and the generator always leads


def test_controller_gradient_follows_the_plan_that_ran_not_the_draw():
    class Replaced(Controller):
        def sample_with_choices(self, query, seed):
            return [["Generate"]], [["Programmer"]]

    ctl = Replaced(seed=0)
    before = ctl.probs("q", 0)
    ctl.train(["q"], lambda q, plan: 1.0, 3)
    after = ctl.probs("q", 0)
    g, p = NAMES.index("Generate"), NAMES.index("Programmer")
    assert after[g] > before[g] and after[p] < before[p]
