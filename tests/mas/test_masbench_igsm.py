"""iGSM-style MASBench: every stated answer equals an independent solver's answer from the text alone,
and each axis has the structure it claims, on many random seeds."""

import random

import networkx as nx
import pytest

from experiments.mas_orchestra import runner
from experiments.masbench.generator import AXES, MAX_LEVEL, MIN_LEVEL, SEPARATOR
from experiments.masbench.generators import generate as pick_generate
from experiments.masbench.generators import generate_split
from experiments.masbench.igsm import ancestors, depth, generate, solution
from experiments.masbench.igsm_solver import solve
from experiments.masbench.igsm_world import CONVENTION, NOISE_LINE
from experiments.masbench.scorer import score
from jaxlab.config import load
from jaxlab.llm import ScriptedClient

from orchestra_helpers import GOOD_SYSTEM, is_orchestrator

SEEDS = random.Random(13).sample(range(10**6), 30)


def _digraph(g) -> nx.DiGraph:
    d = nx.DiGraph()
    d.add_nodes_from(g.exprs)
    d.add_edges_from((p, k) for k, e in g.exprs.items() for p in e.parents)
    return d


@pytest.mark.parametrize("axis", AXES)
def test_answers_equal_the_text_only_solver_on_many_seeds(axis):
    implicit_needed = 0
    for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        for seed in SEEDS:
            p = generate(axis, level, seed)
            assert solve(p.question) == list(p.answers), (axis, level, seed)
            assert all(0 <= int(a) < 23 for a in p.answers[-1:]) and CONVENTION in p.question
            g = p.graph
            implicit_needed += any(g.exprs[k].kind == "hier" for k in ancestors(g, g.targets))
    assert implicit_needed >= 0.3 * (MAX_LEVEL - MIN_LEVEL + 1) * len(SEEDS)  # implicit quantities are exercised


def _longest_ops(g, target) -> int:
    """Longest path by networkx, each node weighted by its operations (independent of igsm.depth)."""
    d = _digraph(g).subgraph(nx.ancestors(_digraph(g), target) | {target})
    best = {}
    for k in nx.topological_sort(d):
        best[k] = g.exprs[k].ops + max((best[p] for p in d.predecessors(k)), default=0)
    return best[target]


@pytest.mark.parametrize("level", [2, 5, 9, 12])
def test_each_axis_has_the_structure_it_claims(level):
    for seed in SEEDS[:6]:
        d = generate("depth", level, seed).graph
        assert depth(d, d.targets[0]) == level == _longest_ops(d, d.targets[0])
        assert nx.is_directed_acyclic_graph(_digraph(d))

        b = generate("breadth", level, seed)
        indeg = dict(_digraph(b.graph).in_degree())
        assert indeg[b.graph.targets[0]] == level and max(indeg.values()) == level and len(b.answers) == 1

        par = generate("parallel", level, seed)
        need = _digraph(par.graph).subgraph(ancestors(par.graph, par.graph.targets))
        comps = list(nx.weakly_connected_components(need))
        assert len(comps) == level == len(par.answers)
        assert all(sum(t in c for t in par.graph.targets) == 1 for c in comps)  # one asked parameter each

        h = generate("horizon", level, seed)
        g = h.graph
        carries = [(p, k) for k, e in g.exprs.items() for p in e.parents if p[0] != k[0]]
        assert len(carries) == level - 1 and all(p in g.targets for p, _ in carries)
        assert all(g.targets[i - 1] in ancestors(g, [g.targets[i]]) for i in range(1, level))
        assert [f"[answer{i}]" in h.question for i in range(1, level)] == [True] * (level - 1)
        assert len(h.answers) == level and SEPARATOR in h.gold

        r = generate("robustness", level, seed)
        lines = r.question.split("\n")
        assert len(r.graph.magic) == level and len(r.answers) == level + 1
        assert sum(x.startswith("Adversarial note: Verify before you take it") for x in lines) == level
        assert sum(x.startswith("One of the special magic numbers") for x in lines) == level
        facts = [x for x in lines if x.startswith("The number of each")]
        assert len(facts) == len(r.graph.stated) and lines.count(NOISE_LINE) > len(facts)
        assert r.answers[:level] == tuple(str(t) for _, t, _ in r.graph.magic)
        assert all(str(fake) not in r.answers for _, _, fake in r.graph.magic)


def test_solution_is_the_topological_chain_to_the_answer():
    p = generate("depth", 6, SEEDS[0])
    g, t = p.graph, p.graph.targets[0]
    steps = solution(g, t)
    assert len(steps) == len(ancestors(g, [t])) and steps[-1].endswith(f"= {p.answers[0]}")
    assert steps[-1].startswith(f"{t[1]}'s {t[2]} = ")


def test_mod_23_and_default_zero_convention_in_the_solver():
    text = (
        "The number of each Chemistry Lab's Duffle Backpack equals 20 more than each Art Studio's Duffle "
        "Backpack. The number of each Art Studio's Duffle Backpack equals 16. The number of each Chemistry "
        "Lab's Laptop Backpack equals 5 more than each Music Room's Laptop Backpack. How many Backpack does "
        "Chemistry Lab have?"
    )
    assert solve(text) == [str((20 + 16 + 5 + 0) % 23)]  # Music Room's Laptop Backpack is never mentioned: 0
    implicit = (
        "The number of each Oak Ridge High's Art Studio equals 3. The number of each Art Studio's Duffle "
        "Backpack equals 4. The number of each Oak Ridge High's Music Room equals 7. How many Duffle "
        "Backpack does Oak Ridge High have?"
    )
    assert solve(implicit) == ["12"]  # 3 x 4 + 7 x (Music Room's Duffle Backpack = 0)
    with pytest.raises(ValueError, match="circular"):
        solve("The number of each Toad's Femur equals each Toad's Bone. How many Femur does Toad have?")


def test_seeded_selectable_and_scored_like_masbench():
    assert generate("horizon", 4, 7) == generate("horizon", 4, 7)
    assert generate("horizon", 4, 7).question != generate("horizon", 4, 8).question
    assert pick_generate("depth", 3, 1, generator="igsm") == generate("depth", 3, 1)
    assert [p.axis for p in generate_split(["depth", "parallel"], [2, 3], 2, generator="igsm")] == ["depth"] * 4 + [
        "parallel"
    ] * 4
    with pytest.raises(ValueError, match="generator"):
        generate_split(["depth"], [2], 1, generator="gsm")
    with pytest.raises(ValueError, match="level"):
        generate("depth", 13, 0)
    p = generate("robustness", 2, 0)
    reply = "\n\n".join(f"\\boxed{{{a}}}" for a in p.answers)
    assert score(reply, p.answers)["correct"]
    fooled = "\n\n".join(f"\\boxed{{{f}}}" for _, _, f in p.graph.magic) + f"\n\n\\boxed{{{p.answers[-1]}}}"
    assert not score(fooled, p.answers)["correct"]  # believing the adversarial notes fails


def test_orchestra_runner_picks_igsm_by_config_and_scores_every_axis(tmp_path):
    cfg = load(
        runner.Config, None, [f"output_dir={tmp_path}", "generator=igsm", "levels=[2]", "per_level=1", "max_parallel=1"]
    )
    problems = runner._problems(cfg)
    assert [p.id for p in problems] == [f"igsm-{a}-L2-s0" for a in AXES]

    def responder(req):  # answers whichever problem the prompt carries, by the text-only solver
        if is_orchestrator(req):
            return GOOD_SYSTEM.format(extra="")
        text = "\n".join(m["content"] for m in req.messages)
        p = next((p for p in problems if p.question in text), None)
        return "\n\n".join(f"\\boxed{{{a}}}" for a in solve(p.question)) if p else "\\boxed{0}"

    summary = runner.run(cfg, client=ScriptedClient(responder=responder))
    assert summary["n_problems"] == 5 and all(summary["accuracy"][a]["all"] == 1.0 for a in AXES)
