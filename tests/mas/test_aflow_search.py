"""AFlow's optimisation loop at trace level: parent selection rule, experience, repeated-modification check,
failed rounds, and the best round becoming the test-time workflow."""

import json
import math
from collections import Counter

import numpy as np
import pytest

from experiments.mas_prove.benchmarks import Task
from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.aflow_search import (
    AFlowSearch,
    format_experience,
    parse_prompts,
    probabilities,
    select_round,
    top_rounds,
)
from experiments.mas_prove.frameworks.graph import AFlow
from jaxlab.llm import ScriptedClient


def test_selection_probabilities_are_the_authors_mixture():
    # lambda/n + (1 - lambda) * softmax(0.2 * (s - max)), by hand for scores 50, 40, 10 (percent)
    w = [1.0, math.exp(-2.0), math.exp(-8.0)]
    expected = [0.3 / 3 + 0.7 * x / sum(w) for x in w]
    assert probabilities([50, 40, 10]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx([0.716377, 0.183417, 0.100207], abs=1e-5)


def test_select_round_draws_parents_with_those_probabilities_over_the_sorted_rounds():
    items = [{"round": 1, "score": 0.1}, {"round": 2, "score": 0.5}, {"round": 3, "score": 0.4}]
    rng = np.random.default_rng(0)
    counts = Counter(select_round(items, rng)["round"] for _ in range(4000))
    w = [1.0, math.exp(-2.0), math.exp(-8.0)]  # rounds 2, 3, 1 by score
    for rnd, x in zip((2, 3, 1), w):
        assert counts[rnd] / 4000 == pytest.approx(0.1 + 0.7 * x / sum(w), abs=0.03)


def test_top_rounds_keeps_round_one_first_then_the_best_others():
    rounds = [
        {"round": 1, "scores": [0.0]},
        {"round": 2, "scores": [0.5, 0.7]},
        {"round": 3, "scores": [0.9]},
        {"round": 4, "scores": [0.2]},
        {"round": 5, "scores": []},
    ]
    assert top_rounds(rounds, 3) == [
        {"round": 1, "score": 0.0},
        {"round": 3, "score": 0.9},
        {"round": 2, "score": pytest.approx(0.6)},
    ]


def test_experience_text_is_the_authors():
    exp = [
        {"father node": 1, "modification": "add review", "before": 0.5, "after": 0.25, "succeed": False},
        {"father node": 1, "modification": "add ensemble", "before": 0.5, "after": 0.75, "succeed": True},
        {"father node": 2, "modification": "other parent", "before": 0.7, "after": 0.1, "succeed": False},
    ]
    text = format_experience(exp, 1)
    assert text.startswith(
        "Original Score: 0.5\nThese are some conclusions drawn from experience:\n\n"
        "-Absolutely prohibit add review (Score: 0.25)\n-Absolutely prohibit add ensemble \n"
    )
    assert "other parent" not in text and text.endswith("or modifying the prompt.")
    assert format_experience(exp, 3) == "No experience data found for round 3."


def test_prompts_are_parsed_without_executing_them():
    assert parse_prompts('MAGIC_PROMPT = """Solve it.\n"""\nimport os; X = 1') == {"MAGIC_PROMPT": "Solve it.\n"}


TASKS = [Task("v1", "math", "What is 17 cubed?", ("4913",)), Task("v2", "math", "Cube 17.", ("4913",))]
MAGIC = json.dumps([{"id": "s", "op": "Custom", "in": ["problem"], "prompt": "MAGIC_PROMPT"}])


def reply(modification, graph, prompt='MAGIC_PROMPT = """MAGIC: """'):
    return f"ideas...<modification>{modification}</modification><graph>{graph}</graph><prompt>{prompt}</prompt>"


def test_optimisation_loop_trace():
    replies = iter(
        [
            reply("add magic", MAGIC),
            reply("add magic", MAGIC),  # round 3: a repeat, asked again
            reply("add ensemble", json.dumps([{"id": "s", "op": "ScEnsemble", "in": ["nowhere"]}])),
            reply("add review", json.dumps([{"id": "r", "op": "Review", "in": ["problem"]}])),
        ]
    )
    opt_prompts = []

    def responder(req):
        text = req.messages[-1]["content"]
        if "<sample>" in text:
            opt_prompts.append(req)
            return next(replies)
        return "\\boxed{4913}" if text.startswith("MAGIC: ") else "\\boxed{1}"

    client = ScriptedClient(responder=responder)
    flow = AFlow()
    flow.generations = 3
    rounds = flow.search(
        lambda t, tag: MASContext(client, t.prompt, task_id=t.id, framework=tag),
        TASKS,
        lambda t, out: "4913" in out,
        MASContext(client, "opt", framework="aflow"),
        sample=1,
    )
    assert [(r["round"], r["scores"]) for r in rounds] == [(1, [0.0, 0.0]), (2, [1.0, 1.0]), (3, []), (4, [])]
    solver = [r.messages[-1]["content"] for r in client.requests if "<sample>" not in r.messages[-1]["content"]]
    assert solver[:4] == [t.prompt for t in TASKS] * 2  # round 1: one Custom, empty instruction, 2 validation runs
    first = opt_prompts[0].messages
    assert len(first) == 1 and first[0]["role"] == "user" and opt_prompts[0].max_tokens == 4096
    assert (
        "No experience data found for round 1." in first[0]["content"] and "<score>0.0</score>" in first[0]["content"]
    )
    assert '"question": "Cube 17."' in first[0]["content"]  # a logged failure of the parent
    assert "1. Custom: Generates anything based on customized input and instruction." in first[0]["content"]
    third = opt_prompts[1].messages[0]["content"]  # sample=1: the parent is always round 1
    assert "-Absolutely prohibit add magic \n" in third and "Original Score: 0.0" in third
    assert len(opt_prompts) == 4 and "not earlier nodes" in rounds[2]["error"] and "Review" in rounds[3]["error"]
    assert flow.searched["best_round"] == 2 and [e["modification"] for e in flow.searched["experience"]] == [
        "add magic"
    ]
    assert flow.searched["experience"][0]["succeed"] is True
    ctx = MASContext(client, "17^3?", task_id="test", framework="aflow")
    assert flow.solve(ctx) == "\\boxed{4913}" and ctx.steps[0].prompt == "MAGIC: 17^3?"
    assert ctx.trace["aflow"]["best_round"] == 2


def test_a_round_with_only_repeated_modifications_fails_after_the_regenerate_limit():
    def responder(req):
        if "<sample>" in req.messages[-1]["content"]:
            return reply("same", MAGIC)
        return "\\boxed{4913}" if req.messages[-1]["content"].startswith("MAGIC: ") else "\\boxed{1}"

    client = ScriptedClient(responder=responder)
    search = AFlowSearch(max_rounds=2, validation_rounds=1, sample=1, max_regenerate=3)
    rounds = search.optimize(
        lambda t, tag: MASContext(client, t.prompt, task_id=t.id, framework=tag),
        TASKS,
        lambda t, out: "4913" in out,
        MASContext(client, "opt", framework="aflow"),
    )
    assert rounds[1]["scores"] == [1.0] and "no new modification after 3 replies" in rounds[2]["error"]
    assert sum("<sample>" in r.messages[-1]["content"] for r in client.requests) == 1 + 3
    assert search.best()["round"] == 2


def test_a_worse_child_is_a_failure_and_the_best_round_stays_the_parent():
    def responder(req):
        text = req.messages[-1]["content"]
        if "<sample>" in text:
            return reply("make it worse", MAGIC, 'MAGIC_PROMPT = """WORSE: """')
        return "\\boxed{4913}" if text == "Cube 17." else "\\boxed{1}"  # round 1 gets one of two right

    client = ScriptedClient(responder=responder)
    search = AFlowSearch(max_rounds=1, validation_rounds=1, sample=1)
    rounds = search.optimize(
        lambda t, tag: MASContext(client, t.prompt, task_id=t.id, framework=tag),
        TASKS,
        lambda t, out: "4913" in out,
        MASContext(client, "opt", framework="aflow"),
    )
    assert [r["scores"] for r in rounds] == [[0.5], [0.0]]
    assert search.experience == [
        {"father node": 1, "modification": "make it worse", "before": 0.5, "after": 0.0, "succeed": False}
    ]
    assert search.best()["round"] == 1
    assert "-Absolutely prohibit make it worse (Score: 0.0)\n" in format_experience(search.experience, 1)
