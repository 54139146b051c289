import json

import pytest

from experiments.grpo.evaluate import shared_data_dir
from experiments.mas_orchestra.execute import compose_task, execute, substitute
from experiments.mas_orchestra.orchestrator import run_orchestrated
from experiments.mas_orchestra.reward import orchestration_reward
from experiments.mas_orchestra.spec import (
    AgentSpec,
    OrchestrationError,
    SystemSpec,
    parse_text,
    parse_tool_calls,
    tool_schemas,
    validate,
)
from experiments.mas_orchestra.subagents import REGISTRY, Corpus, Runtime, Settings, majority
from jaxlab.llm import ScriptedClient, ToolCall, tool_reply

from orchestra_helpers import (
    GOOD_SYSTEM,
    SEED_DEBATE,
    SEED_GRAPH,
    SEED_SINGLE,
    is_orchestrator,
    last_user,
    research_turn,
    system_of,
)

Q = "What is 17 cubed?"


def _spec(agents, edges):
    return SystemSpec(tuple(AgentSpec(i, n, "", {"agent_input": t}) for i, n, t in agents), tuple(edges))


def test_seed_schema_parses_empty_inputs_roles_and_references():
    single = parse_text(SEED_SINGLE)
    assert single.agents[0].arguments == {"agent_input": ""} and validate(single) == [["cube_agent"]]
    deb = parse_text(SEED_DEBATE).agents[0]
    assert deb.arguments == {"agent_input": "", "debate_roles": ["Number Theorist", "Careful Accountant"]}
    graph = parse_text(SEED_GRAPH)
    assert [a.name for a in graph.agents] == ["WebSearchAgent", "DebateAgent", "ReflexionAgent"]
    assert graph.agents[1].arguments["debate_roles"] == ["Astronomer", "Mathematics Professor"]
    assert validate(graph) == [["WS_1"], ["D_2"], ["R1"]] and "ReflexionAgent R1" in graph.thinking


def test_task_alias_and_ignored_arguments():
    spec = parse_text(
        GOOD_SYSTEM.format(extra="")
        .replace("agent_input>", "task>", 2)
        .replace(
            "</required_arguments></agent>\n<agent><agent_id>check",
            "<n_samples>9</n_samples></required_arguments></agent>\n<agent><agent_id>check",
            1,
        )
    )
    assert spec.agents[0].arguments == {"agent_input": ""} and spec.agents[0].ignored == {"n_samples": "9"}
    assert spec.edges == (("solve", "check"),) and validate(spec) == [["solve"], ["check"]]


@pytest.mark.parametrize(
    "roles,ok",
    [
        ('["A role", "B role"]', True),
        ("['One', 'Two', 'Three']", True),
        ('["Only one"]', False),
        ('["a", "b"]', False),
        ("not a list", False),
    ],
)
def test_debate_roles_validation(roles, ok):
    text = SEED_DEBATE.replace("[\"Number Theorist\", 'Careful Accountant']", roles)
    if ok:
        validate(parse_text(text))
    else:
        with pytest.raises(OrchestrationError) as exc:
            validate(parse_text(text))
        assert exc.value.kind == "bad_arguments" and "debate_roles" in str(exc.value)


@pytest.mark.parametrize(
    "agents,edges,kind",
    [
        ([("a", "MagicAgent", "x")], [], "unknown_agent"),
        ([("a", "CoTAgent", "x"), ("a", "CoTAgent", "y")], [], "duplicate_id"),
        ([("a", "CoTAgent", "${zz}")], [], "unknown_reference"),
        ([("a", "CoTAgent", "${b}"), ("b", "CoTAgent", "${a}")], [("b", "a"), ("a", "b")], "cycle"),
        ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "y")], [], "sink"),
        ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "y")], [("a", "b")], "edge_mismatch"),
        ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "${a}")], [], "edge_mismatch"),
        ([("a b", "CoTAgent", "x")], [], "bad_arguments"),
    ],
)
def test_invalid_systems_are_named_failures(agents, edges, kind):
    with pytest.raises(OrchestrationError) as exc:
        validate(_spec(agents, edges))
    assert exc.value.kind == kind


def test_missing_fields_and_unparseable_text():
    with pytest.raises(OrchestrationError, match="missing \\['agent_input'\\]"):
        validate(SystemSpec((AgentSpec("a", "CoTAgent", "", {}),), ()))
    with pytest.raises(OrchestrationError, match="missing <required_arguments>"):
        parse_text("<agent><agent_id>a</agent_id></agent>")
    with pytest.raises(OrchestrationError) as exc:
        parse_text("I will just answer: 5")
    assert exc.value.kind == "parse"


def test_tool_calls_parse_with_inferred_or_explicit_edges():
    calls = [
        ToolCall("CoTAgent", json.dumps({"agent_id": "a", "agent_description": "d", "agent_input": ""})),
        ToolCall(
            "DebateAgent",
            json.dumps(
                {"agent_id": "b", "agent_description": "d", "task": "use ${a}", "debate_roles": ["Critic", "Solver"]}
            ),
        ),
    ]
    assert parse_tool_calls(calls).edges == (("a", "b"),)
    explicit = parse_tool_calls(calls + [ToolCall("connect", json.dumps({"edges": [{"from": "a", "to": "b"}]}))])
    assert validate(explicit) == [["a"], ["b"]] and explicit.agents[1].arguments["agent_input"] == "use ${a}"
    assert set(REGISTRY) | {"connect"} == {t["function"]["name"] for t in tool_schemas()}


def test_sub_tasks_carry_the_original_question():
    assert compose_task(Q, "", False) == Q and compose_task(Q, "  ", True) == Q
    assert compose_task(Q, "cube 17", False) == f"Original task: {Q}; Current Sub-task: cube 17."
    assert compose_task(Q, "cube 17", True) == (  # the seed parser's single-agent text, verbatim
        f"Original task: {Q}; Current Sub-task: cube 17. Please solve the currentsub-task first. If its result "
        "directly answers the original question, output that as the final answer. Otherwise, use the sub-task result "
        "as guidance to complete the original question and output the final answer to the original question."
    )


def test_diamond_runs_levels_in_order_and_every_agent_sees_the_question():
    spec = _spec(
        [
            ("root", "CoTAgent", ""),
            ("l", "CoTAgent", "left of ${root}"),
            ("r", "SCAgent", "right of ${root}"),
            ("sink", "CoTAgent", "join ${l} and ${r}"),
        ],
        [("root", "l"), ("root", "r"), ("l", "sink"), ("r", "sink")],
    )
    client = ScriptedClient(responder=lambda req: f"<{last_user(req)[-60:]}> \\boxed{{1}}")
    result = execute(spec, Runtime(client, Settings(sc_samples=3)), Q)
    assert result.levels == [["root"], ["l", "r"], ["sink"]]
    assert result.inputs["root"] == Q
    assert all(result.inputs[a].startswith(f"Original task: {Q}; Current Sub-task: ") for a in ("l", "r", "sink"))
    assert result.outputs["l"] in result.inputs["sink"] and result.outputs["r"] in result.inputs["sink"]
    assert all(Q in r.messages[-1]["content"] for r in client.requests)
    assert len(client.requests) == 1 + 1 + 3 + 1 and result.final.endswith("\\boxed{1}")
    assert substitute(3, {}) == 3


def test_subagents_use_the_authors_settings():
    s = Settings()
    assert (s.temperature, s.sc_samples, s.debate_rounds, s.reflexion_rounds, s.search_top_k) == (0.5, 5, 5, 5, 5)
    client = ScriptedClient(
        responder=lambda req: "\\boxed{4913}" if "reviewer" not in system_of(req) else "wrong somewhere"
    )
    rt = Runtime(client)
    REGISTRY["SCAgent"].run(rt, "sc", Q, {"agent_input": ""})
    assert len(client.requests) == 5 and {r.temperature for r in client.requests} == {0.5}
    assert len({r.seed for r in client.requests}) == 5  # five distinct samples
    n = len(client.requests)
    REGISTRY["DebateAgent"].run(rt, "d", Q, {"agent_input": "", "debate_roles": ["Professor", "Teacher"]})
    debate = client.requests[n:]
    assert len(debate) == 5 * 2 + 1  # 5 rounds of 2 roles, then the final decision agent
    assert "You are a Professor" in debate[0].messages[0]["content"]
    assert "Your previous solution" in debate[2].messages[-1]["content"]  # round 2 reads round 1
    assert "Solution from the Teacher" in debate[2].messages[-1]["content"]
    assert "Solution from the Professor" in debate[-1].messages[-1]["content"]
    n = len(client.requests)
    REGISTRY["ReflexionAgent"].run(rt, "r", Q, {"agent_input": ""})
    assert len(client.requests) - n == 1 + 2 * 5  # never accepted: 5 critic + reflect rounds


def test_self_consistency_votes():
    replies = iter(["\\boxed{1}", "\\boxed{2}", "\\boxed{2}", "\\boxed{3}", "\\boxed{1}", "\\boxed{2}"])
    rt = Runtime(ScriptedClient(responder=lambda req: next(replies)), Settings(sc_samples=6))
    assert REGISTRY["SCAgent"].run(rt, "sc", Q, {"agent_input": ""}) == "\\boxed{2}"
    assert majority(["\\boxed{1}", "\\boxed{2}", "\\boxed{2}"]) == "\\boxed{2}"


def test_debate_exchanges_answers_between_roles():
    seen = []

    def responder(req):
        seen.append(req.messages[-1]["content"])
        return "\\boxed{9}" if "Solution from the B role" in req.messages[-1]["content"] else "\\boxed{1}"

    rt = Runtime(ScriptedClient(responder=responder), Settings(debate_rounds=2))
    out = REGISTRY["DebateAgent"].run(rt, "d", Q, {"agent_input": "", "debate_roles": ["A role", "B role"]})
    assert "Solution from the A role:\n\\boxed{1}" in seen[3]  # B in round 2 read A's round-1 answer
    assert out == "\\boxed{9}"  # the final decision saw both roles' last answers


def test_reflexion_keeps_the_history_until_the_critic_accepts():
    replies = iter(["\\boxed{4}", "wrong: recount", "\\boxed{5}", "still off", "\\boxed{6}", "fine. correct: True"])
    client = ScriptedClient(responder=lambda req: next(replies))
    assert REGISTRY["ReflexionAgent"].run(Runtime(client), "r", Q, {"agent_input": ""}) == "\\boxed{6}"
    last_attempt = client.requests[4].messages[-1]["content"]
    assert "Attempt 1:\n\\boxed{4}" in last_attempt and "Feedback on attempt 2:\nstill off" in last_attempt


def test_search_agent_single_query_mode_retrieves_documents_with_bm25():
    docs = ["Mars has two moons, Phobos and Deimos.", "Jupiter has many moons.", "Bread needs flour and water."]
    client = ScriptedClient(responder=lambda req: "\\boxed{42}")
    rt = Runtime(client, Settings(search_mode="single"), corpus=Corpus(docs))
    REGISTRY["WebSearchAgent"].run(rt, "ws", Q, {"agent_input": "How many moons does Mars have, Phobos?"})
    prompt = client.requests[0].messages[-1]["content"]
    assert prompt.index("Phobos and Deimos") < prompt.index("Jupiter") and "flour" not in prompt
    assert Corpus(docs).search("flour bread", 5) == [docs[2]] and Corpus(()).search("x", 3) == []


MOONS = Corpus(
    ["Mars has two moons, Phobos and Deimos.", "Jupiter has many moons.", "Bread needs flour and water."],
    ["mars", "jupiter", "bread"],
)


def test_search_agent_runs_the_authors_tool_loop_over_bm25():
    def responder(req):
        n_turns = sum(m["role"] == "assistant" for m in req.messages)
        if n_turns == 0:
            return tool_reply("web_search", {"search_query": "moons of Mars"})
        if n_turns == 1:
            return tool_reply("think_tool", {"reflection": "Mars: two moons, enough."})
        return "Mars has two moons [SOURCE 1]. \\boxed{2}"

    client = ScriptedClient(responder=responder)
    out = REGISTRY["WebSearchAgent"].run(
        Runtime(client, corpus=MOONS), "ws", "How many moons has Mars?", {"agent_input": ""}
    )
    assert out.endswith("\\boxed{2}") and len(client.requests) == 3
    first, second, third = client.requests
    assert first.messages[1]["content"].startswith("Research Question: How many moons has Mars?")
    assert {t["function"]["name"] for t in first.tools} == {"web_search", "think_tool"}
    result = second.messages[-1]
    assert result["role"] == "tool" and result["content"].startswith("Search results:")
    assert "--- SOURCE 1: mars ---" in result["content"] and "flour" not in result["content"]
    assert result["content"].index("SOURCE 1: mars") < result["content"].index("SOURCE 2: jupiter")
    assert third.messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_think_tool",
        "content": "Reflection recorded: Mars: two moons, enough.",
    }
    assert len({r.seed for r in client.requests}) == 3 and {r.temperature for r in client.requests} == {0.5}


def test_search_loop_budget_tool_cap_and_unknown_tools():
    from jaxlab.llm.types import Choice

    many = Choice(
        text="",
        finish_reason="tool_calls",
        tool_calls=tuple(
            ToolCall("web_search" if i else "browse", json.dumps({"search_query": f"moons {i}"}), id=f"c{i}")
            for i in range(7)
        ),
    )
    client = ScriptedClient(responder=lambda req: many)  # a model that never stops calling tools
    out = REGISTRY["WebSearchAgent"].run(Runtime(client, corpus=MOONS), "ws", Q, {"agent_input": ""})
    assert len(client.requests) == 5 + 1 and out == ""  # 5 tool turns, then the final turn's text is the answer
    tool_msgs = [m for m in client.requests[1].messages if m["role"] == "tool"]
    assert len(tool_msgs) == 5 and tool_msgs[0]["content"] == "Unknown tool: browse"  # at most 5 calls a turn
    assert len(client.requests[-1].messages) == 2 + 5 * (1 + 5)


@pytest.mark.skipif(shared_data_dir() is None, reason="../shared/data is absent")
def test_search_over_a_real_local_corpus():
    corpus = Corpus.from_path(shared_data_dir() / "liveresearchbench" / "reference_reports")
    assert len(corpus.documents) >= 40
    top = corpus.search("electric vehicle battery market", 3)
    assert len(top) == 3 and all("batter" in d.lower() or "electric" in d.lower() for d in top)


def test_seed_graph_end_to_end():
    def responder(req):
        user = last_user(req)
        if is_orchestrator(req):
            return SEED_GRAPH
        turn = research_turn(
            req,
            lambda u: "moons of Mars Phobos",
            lambda found: "Mars has 2 moons [1]. \\boxed{2}" if "Phobos" in found else "\\boxed{0}",
        )
        if turn is not None:
            return turn
        if "reviewer" in system_of(req):
            return "correct: True"
        return "2 * 21 = \\boxed{42}" if "Mars has 2 moons" in user or "42" in user else "\\boxed{0}"

    q = "Multiply the number of moons of Mars by 21."
    rt = Runtime(
        ScriptedClient(responder=responder),
        Settings(debate_rounds=1, reflexion_rounds=1),
        corpus=Corpus(["Mars has two moons, Phobos and Deimos.", "Saturn's rings are ice."]),
    )
    out = run_orchestrated(q, rt)
    assert out.success and out.final.endswith("\\boxed{42}"), out.error
    assert all(t.startswith(f"Original task: {q}") for t in out.inputs.values())


def test_run_orchestrated_scores_failures_instead_of_raising():
    ok = run_orchestrated(
        Q, Runtime(ScriptedClient(responder=lambda r: SEED_SINGLE if is_orchestrator(r) else "\\boxed{4913}"))
    )
    assert ok.success and ok.final == "\\boxed{4913}" and ok.inputs == {"cube_agent": Q}
    cyc = run_orchestrated("t", Runtime(ScriptedClient([GOOD_SYSTEM.format(extra=" ${check}")])))
    assert not cyc.success and cyc.error_kind == "edge_mismatch"
    tools = run_orchestrated(
        "t",
        Runtime(
            ScriptedClient(
                [tool_reply("CoTAgent", {"agent_id": "a", "agent_description": "d", "agent_input": ""}), "\\boxed{9}"]
            )
        ),
        use_tools=True,
    )
    assert tools.success and tools.final == "\\boxed{9}"
    crashed = run_orchestrated("t", Runtime(ScriptedClient([GOOD_SYSTEM.format(extra="")])))
    assert not crashed.success and crashed.error_kind == "execution" and "solve" in crashed.error


def test_reward_weights():
    assert orchestration_reward(True, True) == pytest.approx(1.0)
    assert orchestration_reward(True, False) == pytest.approx(0.1)
    assert orchestration_reward(False, False) == 0.0
    with pytest.raises(ValueError):
        orchestration_reward(False, True)


def test_identical_rerun_hits_the_cache_for_every_call(tmp_path):
    import random
    import time

    from jaxlab.llm.cache import CachedClient

    def responder(req):
        time.sleep(random.uniform(0, 0.003))
        if is_orchestrator(req):
            return SEED_GRAPH.replace("WebSearchAgent", "SCAgent")
        if "reviewer" in system_of(req):
            return "ok" if req.seed % 2 else "correct: True"
        return f"\\boxed{{{req.seed % 3}}}"

    inner = ScriptedClient(responder=responder)
    counts = []
    for _ in range(2):
        cached = CachedClient(inner, tmp_path, max_concurrency=8)
        out = run_orchestrated(
            Q, Runtime(cached, Settings(debate_rounds=2, reflexion_rounds=2), seed=1, problem_id="p0"), max_parallel=4
        )
        assert out.success, out.error
        counts.append((cached.hits, cached.misses))
    assert counts[0][1] > 5 and counts[1] == (sum(counts[0]), 0)
