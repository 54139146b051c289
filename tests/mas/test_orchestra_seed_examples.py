"""The seed's own format: every example in the MAS-Orchestra authors' orchestrator prompt parses, validates and runs
(or, for the fragments the prompt calls WRONG, is rejected for the reason the prompt gives)."""

import re

import pytest

from experiments.mas_orchestra.execute import execute
from experiments.mas_orchestra.spec import OrchestrationError, parse_text, validate
from experiments.mas_orchestra.subagents import Corpus, Runtime, Settings
from jaxlab.llm import ScriptedClient

from orchestra_helpers import research_turn
from orchestra_seed_examples import MULTI, SINGLE, WRONG

SMALL = Settings(sc_samples=2, debate_rounds=1, reflexion_rounds=1, search_top_k=1)
CORPUS = [
    "The New York City housing vacancy rate was 1.4 percent in 2023 (NYC HVS).",
    "Los Angeles housing vacancy rate: 3.2 percent (Census).",
    "Chicago housing vacancy rate: 6.1 percent per the ACS.",
    "Bread needs flour, water, salt.",
]


def _runtime():
    counter = iter(range(10_000))

    def responder(req):  # search agents query BM25 with their sub-task, then answer with what they found
        turn = research_turn(
            req,
            lambda user: user.split("Current Sub-task: ", 1)[-1].split("\n\nPlease conduct")[0],
            lambda found: f"[reply {next(counter)}] {found[:200]}",
        )
        return turn if turn is not None else f"[reply {next(counter)}] \\boxed{{1}}"

    client = ScriptedClient(responder=responder)
    return client, Runtime(client, SMALL, corpus=Corpus(CORPUS))


def _raw_inputs(text):
    """A slow reference: each agent's raw <agent_input> straight from the example text."""
    return {
        m.group(1).strip(): m.group(2).strip()
        for m in re.finditer(r"<agent_id>(.*?)</agent_id>.*?<agent_input>(.*?)</agent_input>", text, re.S)
    }


@pytest.mark.parametrize("question,text", SINGLE, ids=[q[:30] for q, _ in SINGLE])
def test_single_agent_examples_run_on_the_original_question(question, text):
    spec = parse_text(text)
    assert len(spec.agents) == 1 and spec.agents[0].arguments["agent_input"] == "" and not spec.edges
    if spec.agents[0].name == "DebateAgent":
        assert spec.agents[0].arguments["debate_roles"] == ["Mathematics Professor", "Statistics Teacher"]
    client, rt = _runtime()
    result = execute(spec, rt, question)
    assert result.inputs == {spec.agents[0].id: question}  # empty input = the original question, nothing added
    users = [next(m["content"] for m in r.messages if m["role"] == "user") for r in client.requests]
    assert users and all(u.startswith((question, f"Research Question: {question}\n")) for u in users)


RUNNABLE = [m for m in MULTI if "<edge>" in m[1]]


@pytest.mark.parametrize("question,text", RUNNABLE, ids=[q[:30] for q, _ in RUNNABLE])
def test_multi_agent_examples_compose_sub_tasks_with_the_original_task(question, text):
    spec = parse_text(text)
    levels = validate(spec)
    ids = [a.id for a in spec.agents]
    assert sorted(i for lv in levels for i in lv) == sorted(ids) and levels[-1] == ["FINAL"]
    level_of = {i: k for k, lv in enumerate(levels) for i in lv}
    assert all(level_of[a] < level_of[b] for a, b in spec.edges)
    client, rt = _runtime()
    result = execute(spec, rt, question)
    raw = _raw_inputs(text)
    assert set(raw) == set(ids)
    for agent_id, sub_task in raw.items():
        filled = re.sub(r"\$\{(\w+)\}", lambda m: result.outputs[m.group(1)], sub_task)
        assert result.inputs[agent_id] == f"Original task: {question}; Current Sub-task: {filled}."
    assert result.final == result.outputs["FINAL"]
    roles = [a.arguments.get("debate_roles") for a in spec.agents if a.name == "DebateAgent"]
    assert all(isinstance(r, list) and len(r) >= 2 for r in roles)


def test_search_agents_in_the_housing_example_retrieve_their_city():
    question, text = MULTI[0]
    client, rt = _runtime()
    execute(parse_text(text), rt, question)
    results = [m["content"] for r in client.requests for m in r.messages[-1:] if m["role"] == "tool"]
    assert len(results) == 3  # one web_search per WebSearchAgent, answered from the local corpus
    for city, doc in zip(("New York City", "Los Angeles", "Chicago"), CORPUS):
        research = next(
            r for r in client.requests if r.tools and f"vacancy rate for {city}" in r.messages[1]["content"]
        )
        assert research.messages[1]["content"].startswith(f"Research Question: Original task: {question}; Current")
        found = next(res for res in results if doc in res)
        assert found.index(doc) < min((found.index(d) for d in CORPUS if d != doc and d in found), default=10**9)


def test_the_example_without_an_edge_block_is_rejected():
    question, text = next(m for m in MULTI if "<edge>" not in m[1])
    with pytest.raises(OrchestrationError) as exc:
        validate(parse_text(text))
    assert exc.value.kind == "edge_mismatch" and "references without an edge" in str(exc.value)


def _agents(*pairs):
    return "".join(
        f"<agent><agent_id>{i}</agent_id><agent_name>CoTAgent</agent_name><required_arguments>"
        f"<agent_input>{t}</agent_input></required_arguments></agent>\n"
        for i, t in pairs
    )


WRONG_CASES = [  # (the checklist fragment, completed where it is only an edge block, the kind it must fail with)
    (WRONG[0], "duplicate_id"),
    (WRONG[1], "unknown_reference"),
    (_agents(("A", ""), ("B", "use ${A}"), ("C", "use ${A}")) + WRONG[2], "sink"),
    (WRONG[3], "unknown_reference"),
    (_agents(("A", ""), ("B", "use ${A}")) + WRONG[4], "duplicate_edge"),
    (WRONG[5], "edge_mismatch"),
    (_agents(("A", "${C}"), ("B", "${A}"), ("C", "${B}"), ("REFLECT", "${REFLECT}")) + WRONG[6], "cycle"),
]


@pytest.mark.parametrize("text,kind", WRONG_CASES, ids=[k for _, k in WRONG_CASES])
def test_the_prompts_wrong_examples_are_rejected_for_their_reason(text, kind):
    with pytest.raises(OrchestrationError) as exc:
        validate(parse_text(text))
    assert exc.value.kind == kind


def test_the_prompts_corrected_version_passes():
    fixed = WRONG[5].replace(
        "<agent_input>Make final decision.</agent_input>",
        "<agent_input>Make final decision based on: ${C}</agent_input>",
    )
    assert validate(parse_text(fixed)) == [["C"], ["D"]]


def test_seed_parser_leniency_missing_description_input_and_tag_case():
    spec = parse_text(
        "<AGENT><agent_id>A</agent_id><Agent_Name>CoTAgent</Agent_Name>"
        "<required_arguments></required_arguments></AGENT>"
    )
    assert spec.agents[0].description == "" and spec.agents[0].arguments == {"agent_input": ""}
    assert validate(spec) == [["A"]]
