"""ADAS Meta Agent Search at trace level: the seed agents' mechanisms in the sandbox, the authors' agent prompt
layout, the search loop's conversation (proposal, two Reflexion rounds, debug rounds), archive and fitness."""

import ast
import json

import pytest

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.adas import ADAS, bootstrap, fitness_text, seed_archive
from experiments.mas_prove.frameworks.adas_prompts import ALL_ZERO, META_SYSTEM, REFLEXION_1, REFLEXION_2, answer_desc
from experiments.mas_prove.frameworks.adas_sandbox import run_agent
from jaxlab.llm import ScriptedClient

TASK = "What is 17 cubed?"
AIME = answer_desc("aime24")
SEEDS = {a.name: a for a in seed_archive()}


def fields(req) -> list[str]:
    return list(ast.literal_eval(req.messages[0]["content"].split("JSON format.\n", 1)[1].split("\n", 1)[0]))


def agent_reply(**values):
    """A responder for the agents: every requested field from ``values`` (by name), else its name."""
    return lambda req: json.dumps({k: values.get(k, k) for k in fields(req)})


def run(code, responder, **kw):
    ctx = MASContext(ScriptedClient(responder=responder), TASK, task_id="t", framework="adas", **kw)
    return run_agent(ctx, code, AIME), ctx


def test_agent_prompts_are_the_authors_layout_and_a_bad_reply_gives_empty_fields():
    out, ctx = run(SEEDS["Chain-of-Thought"].code, lambda req: "not json, \\boxed{4913}")
    (req,) = ctx.client.requests
    assert req.messages[0]["content"] == (
        "You are a helpful assistant.\n\nReply EXACTLY with the following JSON format.\n{'thinking': 'Your thinking.'"
        ", 'answer': 'Your answer. Return ONLY the final answer as an integer (e.g., 120).'}\nDO NOT MISS ANY REQUEST "
        "FIELDS and ensure that your response is a well-formed JSON object!\n"
    )
    assert req.messages[1]["content"] == f"# Your Task:\n{TASK}\n\nPlease think step by step and then solve the task."
    assert out.status == "ok" and out.answer == ""  # the authors' fallback: '' for every field
    out, _ = run(SEEDS["Chain-of-Thought"].code, agent_reply(answer="4913"))
    assert out.answer == "4913"


def test_self_refine_stops_on_the_critic_and_shows_its_own_attempts():
    out, ctx = run(SEEDS["Self-Refine (Reflexion)"].code, agent_reply(correct="False", answer="7"))
    assert [s.agent for s in ctx.steps] == ["Chain-of-Thought Agent"] + ["Critic Agent", "Chain-of-Thought Agent"] * 5
    last = ctx.steps[-1].prompt  # the refining agent sees its earlier thinking as its own, numbered by iteration
    assert "### thinking #5 by Chain-of-Thought Agent" in last and "(yourself)" in last and "### feedback #5" in last
    _, ctx = run(SEEDS["Self-Refine (Reflexion)"].code, agent_reply(correct="True"))
    assert [s.agent for s in ctx.steps] == ["Chain-of-Thought Agent", "Critic Agent"]


def test_debate_seed_runs_two_rounds_of_three_roles_then_a_final_decision():
    count = iter(range(100))
    out, ctx = run(SEEDS["LLM Debate"].code, lambda req: json.dumps({"thinking": f"T{next(count)}", "answer": "4913"}))
    systems = [r.messages[0]["content"].split("\n")[0] for r in ctx.client.requests]
    roles = ["You are a Math Professor.", "You are a Grade School Teacher.", "You are a Math Enthusiast."]
    assert systems == roles * 2 + ["You are a helpful assistant."] and out.answer == "4913"
    second = ctx.steps[4].prompt  # round 2, agent 1: its own round-1 thinking first, then the others'
    assert second.index("T1") < second.index("T0") < second.index("T2") and "T3" not in second
    final = ctx.steps[6].prompt
    assert all(f"T{k}" in final for k in (3, 4, 5)) and "T0" not in final


@pytest.mark.parametrize(
    "name,calls",
    [
        ("Self-Consistency with Chain-of-Thought", 5),
        ("Quality-Diversity", 5),
        ("Step-back Abstraction", 2),
        ("Dynamic Assignment of Roles", 2),
    ],
)
def test_seed_agent_call_counts(name, calls):
    out, ctx = run(SEEDS[name].code, agent_reply(answer="4913", choice="Grade School Teacher"))
    assert out.status == "ok" and out.answer == "4913" and len(ctx.client.requests) == calls
    if name == "Dynamic Assignment of Roles":
        assert ctx.client.requests[1].messages[0]["content"].startswith("You are a Grade School Teacher.")


def test_self_consistency_votes_the_majority():
    answers = iter(["1", "2", "2", "3", "1"] * 2)
    out, _ = run(
        SEEDS["Self-Consistency with Chain-of-Thought"].code,
        lambda req: json.dumps({"thinking": "t", "answer": next(answers)}),
    )
    assert out.answer == "1"  # Counter.most_common: the first-seen of the tied answers
    answers = iter(["1", "2", "2", "3", "2"])
    assert (
        run(
            SEEDS["Self-Consistency with Chain-of-Thought"].code,
            lambda req: json.dumps({"thinking": "t", "answer": next(answers)}),
        )[0].answer
        == "2"
    )


def test_definition_and_runtime_errors_are_told_apart():
    two = "def helper():\n    pass\n\nasync def forward(self, taskInfo):\n    return 'x'\n"
    out, _ = run(two, agent_reply())
    assert out.status == "definition" and "2 things in namespace" in out.error
    out, _ = run("async def forward(self, taskInfo):\n    return undefined_name\n", agent_reply())
    assert out.status == "runtime" and "NameError" in out.error


def test_agent_random_ids_are_seeded_so_a_rerun_sends_identical_requests():
    a = run(SEEDS["LLM Debate"].code, agent_reply(answer="1"))[1].client.requests
    b = run(SEEDS["LLM Debate"].code, agent_reply(answer="1"))[1].client.requests
    assert [r.messages for r in a] == [r.messages for r in b] and "by Debate Agent " in a[4].messages[1]["content"]


def test_agent_level_verification_reaches_inside_the_generated_agent():
    class Last:
        def rank(self, task, contexts):
            return list(range(len(contexts)))[::-1]

    answers = iter(range(100))
    out, ctx = run(
        SEEDS["Chain-of-Thought"].code,
        lambda req: json.dumps({"thinking": "t", "answer": str(next(answers))}),
        verifier=Last(),
        level="agent",
        n=3,
    )
    assert len(ctx.client.requests) == 3 and out.answer == json.loads(ctx.steps[0].output)["answer"]
    assert ctx.verifications[0]["chosen"] == 2


MAGIC = (
    "async def forward(self, taskInfo):\n    a = LLMAgentBase(['thinking', 'answer'], 'Magic Agent')\n"
    "    t, answer = await a([taskInfo], 'MAGIC: solve it.')\n    return answer\n"
)
ZERO = MAGIC.replace("MAGIC", "PLAIN")
TWO_DEFS = "import math\n" + MAGIC


def _search(meta_replies, generations=1, seeds=7):
    meta = []

    def responder(req):
        if req.messages[0]["content"] == META_SYSTEM:
            meta.append(req)
            return meta_replies[len(meta) - 1]
        return json.dumps({k: "4913" if "MAGIC" in req.messages[1]["content"] else "1" for k in fields(req)})

    client = ScriptedClient(responder=responder)
    adas = ADAS(generations=generations, benchmark="aime24")
    adas.archive = adas.archive[:seeds]  # the later tests need one seed only (each evaluation is a subprocess)
    archive = adas.search(
        lambda task, tag: MASContext(client, task, task_id=task, framework=tag),
        ["17^3?", "Cube 17."],
        lambda task, out: out == "4913",
        MASContext(client, "meta", framework="adas"),
    )
    return adas, archive, meta, client


def sol(name, code, **extra):
    return json.dumps({"reflection": "r", "thought": f"idea {name}", "name": name, "code": code, **extra})


def test_search_proposes_reflects_twice_debugs_and_archives_the_evaluated_agent():
    replies = [
        sol("Draft", "never evaluated"),
        sol("Reflected", "still never evaluated"),
        sol("Two defs", TWO_DEFS),
        sol("Zero", ZERO),
        sol("Magic", MAGIC),
    ]
    adas, archive, meta, client = _search(replies)
    assert [a.name for a in archive[:7]] == list(SEEDS) and all(a.fitness["median"] == 0.0 for a in archive[:7])
    first, r1, r2, debug1, debug2 = meta
    assert [m["role"] for m in first.messages] == ["system", "user"] and first.max_tokens == 4096
    listing = first.messages[1]["content"]
    assert '"name": "LLM Debate"' in listing and json.dumps(fitness_text(archive[0].fitness)) in listing
    assert r1.messages[2] == {"role": "assistant", "content": str(json.loads(replies[0]))}
    assert r1.messages[3]["content"] == REFLEXION_1.replace("[EXAMPLE]", "")  # generation 1: no previous agent
    assert r2.messages[5]["content"] == REFLEXION_2 and len(r2.messages) == 6
    assert debug1.messages[-1]["content"].startswith("Error during evaluation:\nAssertionError: 2 things in namespace")
    assert (
        debug2.messages[-1]["content"]
        == f"Error during evaluation:\n{ALL_ZERO}\nCarefully consider where you went wrong..."
        and len(debug2.messages) == 10
    )
    new = archive[-1]
    assert len(archive) == 8 and (new.name, new.generation, new.debug_rounds) == ("Magic", 1, 2)
    assert new.fitness["median"] == 1.0 and new.code == MAGIC
    assert [e.get("accuracy") for e in adas.log[0]["evaluations"]] == [None, 0.0, 1.0]
    assert not any(
        "never evaluated" in str(r.messages) for r in client.requests if r.messages[0]["content"] != META_SYSTEM
    )
    ctx = MASContext(client, "Cube 17.", task_id="test", framework="adas")
    assert adas.solve(ctx) == "4913" and ctx.trace["adas"]["agent"] == "Magic"
    assert [s.agent for s in ctx.steps] == ["Magic Agent"]


def test_second_generation_reflects_on_the_previous_agent_and_sees_its_fitness():
    replies = [sol("A", MAGIC)] * 3 + [sol("B", MAGIC)] * 3
    adas, archive, meta, _ = _search(replies, generations=2, seeds=1)
    assert [a.generation for a in archive[1:]] == [1, 2]
    shown = json.dumps(archive[1].shown())
    assert meta[4].messages[3]["content"] == REFLEXION_1.replace(
        "[EXAMPLE]", "Here is the previous agent you tried:\n" + shown + "\n\n"
    )
    assert shown in meta[3].messages[1]["content"] and '"generation": 1' in shown and "Median: 100.0%" in shown


def test_zero_after_every_debug_round_keeps_the_last_evaluated_agent_with_its_own_fitness():
    replies = [sol("a", ZERO)] * 3 + [sol("z1", ZERO), sol("z2", ZERO), sol("z3", MAGIC)]
    adas, archive, _, _ = _search(replies, seeds=1)
    assert archive[-1].name == "z2" and archive[-1].fitness["median"] == 0.0  # z3 was proposed, never evaluated
    assert [e["accuracy"] for e in adas.log[0]["evaluations"]] == [0.0, 0.0, 0.0]


def test_a_meta_reply_that_is_no_json_skips_the_generation():
    adas, archive, meta, _ = _search(["I would rather not."], seeds=1)
    assert len(archive) == 1 and len(meta) == 1 and "not a JSON object" in adas.log[0]["skipped"]


def test_bootstrap_fitness_and_its_text():
    f = bootstrap([1, 0, 1, 1])
    assert f["low"] <= f["median"] <= f["high"] and f["median"] == pytest.approx(0.75, abs=0.05)
    assert bootstrap([1.0] * 3) == {"median": 1.0, "low": 1.0, "high": 1.0, "n": 3}
    assert (
        fitness_text({"low": 0.25, "high": 1.0, "median": 0.75})
        == "95% Bootstrap Confidence Interval: (25.0%, 100.0%), Median: 75.0%"
    )
