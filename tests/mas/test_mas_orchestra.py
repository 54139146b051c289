import json

import pytest

from experiments.mas_orchestra.execute import execute, substitute
from experiments.mas_orchestra.orchestrator import run_orchestrated
from experiments.mas_orchestra.reward import orchestration_reward
from experiments.mas_orchestra.spec import (AgentSpec, OrchestrationError, SystemSpec, parse_text, parse_tool_calls,
                                            tool_schemas, validate)
from experiments.mas_orchestra.subagents import REGISTRY, Runtime, majority
from jaxlab.llm import ScriptedClient, ToolCall, tool_reply

from orchestra_helpers import GOOD_SYSTEM, last_user, system_of


def _spec(agents, edges):
    return SystemSpec(tuple(AgentSpec(i, n, "", {"task": t}) for i, n, t in agents), tuple(edges))


def test_parse_text_reads_agents_arguments_and_edges():
    spec = parse_text(GOOD_SYSTEM.format(task="What is 2+3?"))
    assert [a.id for a in spec.agents] == ["solve", "check"] and spec.thinking == "solve, then check"
    assert spec.agents[1].arguments == {"task": "Verify and finalise the answer to: What is 2+3?\nDraft: ${solve}",
                                      "max_rounds": 1}
    assert spec.edges == (("solve", "check"),) and validate(spec) == [["solve"], ["check"]]


@pytest.mark.parametrize("agents,edges,kind", [
    ([("a", "MagicAgent", "x")], [], "unknown_agent"),
    ([("a", "CoTAgent", "x"), ("a", "CoTAgent", "y")], [], "duplicate_id"),
    ([("a", "CoTAgent", "${zz}")], [], "unknown_reference"),
    ([("a", "CoTAgent", "${b}"), ("b", "CoTAgent", "${a}")], [("b", "a"), ("a", "b")], "cycle"),
    ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "y")], [], "sink"),
    ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "y")], [("a", "b")], "edge_mismatch"),
    ([("a", "CoTAgent", "x"), ("b", "CoTAgent", "${a}")], [], "edge_mismatch"),
])
def test_invalid_systems_are_named_failures(agents, edges, kind):
    with pytest.raises(OrchestrationError) as exc:
        validate(_spec(agents, edges))
    assert exc.value.kind == kind


def test_bad_arguments_and_unparseable_text():
    spec = SystemSpec((AgentSpec("a", "SCAgent", "", {"task": "t", "n_samples": "many"}),), ())
    with pytest.raises(OrchestrationError, match="n_samples must be an integer"):
        validate(spec)
    with pytest.raises(OrchestrationError, match="missing <required_arguments>"):
        parse_text("<agent><agent_id>a</agent_id></agent>")
    with pytest.raises(OrchestrationError) as exc:
        parse_text("I will just answer: 5")
    assert exc.value.kind == "parse"


def test_tool_calls_parse_with_inferred_or_explicit_edges():
    calls = [ToolCall("CoTAgent", json.dumps({"agent_id": "a", "agent_description": "d", "task": "t"})),
             ToolCall("DebateAgent", json.dumps({"agent_id": "b", "agent_description": "d", "task": "use ${a}",
                                                 "rounds": 1}))]
    assert parse_tool_calls(calls).edges == (("a", "b"),)
    explicit = parse_tool_calls(calls + [ToolCall("connect", json.dumps({"edges": [{"from": "a", "to": "b"}]}))])
    assert validate(explicit) == [["a"], ["b"]]
    names = {t["function"]["name"] for t in tool_schemas()}
    assert set(REGISTRY) | {"connect"} == names


def test_diamond_runs_independent_branches_in_parallel_and_substitutes_outputs():
    spec = _spec([("root", "CoTAgent", "base"), ("l", "CoTAgent", "left of ${root}"),
                  ("r", "SCAgent", "right of ${root}"), ("sink", "CoTAgent", "join ${l} and ${r}")],
                 [("root", "l"), ("root", "r"), ("l", "sink"), ("r", "sink")])
    client = ScriptedClient(responder=lambda req: f"<{last_user(req)[:40]}> \\boxed{{1}}")
    result = execute(spec, Runtime(client))
    assert result.levels == [["root"], ["l", "r"], ["sink"]]
    assert "[output of l]" in client.requests[-1].messages[-1]["content"]
    assert "[output of r]" in client.requests[-1].messages[-1]["content"]
    assert result.final.endswith("\\boxed{1}")
    assert substitute(3, {}) == 3


def test_each_subagent_runs_with_the_scripted_client():
    def responder(req):
        if "strict reviewer" in system_of(req):
            return "CORRECT"
        return "\\boxed{7}"

    rt = Runtime(ScriptedClient(responder=responder), documents=("Ava has 7 coins.", "Unrelated text."))
    for name, agent in REGISTRY.items():
        assert agent.run(rt, {"task": "How many coins does Ava have?"}).endswith("\\boxed{7}"), name
    assert rt.calls >= 7 and rt.usage.total_tokens > 0
    assert majority(["\\boxed{1}", "\\boxed{2}", "\\boxed{2}"]) == "\\boxed{2}"


def test_reflexion_revises_until_the_critic_accepts():
    replies = iter(["\\boxed{4}", "wrong: recount", "\\boxed{5}", "CORRECT"])
    rt = Runtime(ScriptedClient(responder=lambda req: next(replies)))
    assert REGISTRY["ReflexionAgent"].run(rt, {"task": "t", "max_rounds": 3}) == "\\boxed{5}"


def test_run_orchestrated_scores_failures_instead_of_raising():
    ok = run_orchestrated("2+3?", Runtime(ScriptedClient(
        responder=lambda r: GOOD_SYSTEM.format(task="2+3?") if "Design a multi-agent" in system_of(r)
        else ("CORRECT" if "reviewer" in system_of(r) else "\\boxed{5}"))))
    assert ok.success and ok.final == "\\boxed{5}"
    cyc = run_orchestrated("t", Runtime(ScriptedClient([GOOD_SYSTEM.format(task="${check}")])))
    assert not cyc.success and cyc.error_kind == "edge_mismatch"
    tools = run_orchestrated("t", Runtime(ScriptedClient([
        tool_reply("CoTAgent", {"agent_id": "a", "agent_description": "d", "task": "t"}), "\\boxed{9}"])),
        use_tools=True)
    assert tools.success and tools.final == "\\boxed{9}"
    crashed = run_orchestrated("t", Runtime(ScriptedClient([GOOD_SYSTEM.format(task="t")])))
    assert not crashed.success and crashed.error_kind == "execution" and "solve" in crashed.error


def test_reward_weights():
    assert orchestration_reward(True, True) == pytest.approx(1.0)
    assert orchestration_reward(True, False) == pytest.approx(0.1)
    assert orchestration_reward(False, False) == 0.0
    with pytest.raises(ValueError):
        orchestration_reward(False, True)
