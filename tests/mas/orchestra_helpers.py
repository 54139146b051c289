"""Scripted stand-ins for a model and orchestrator outputs in the seed's own schema, shared by the MAS tests.

The SEED_* systems are written for these tests in the MAS-Orchestra ``harmony_medium`` schema (the format
its prompt's examples use: ``agent_input``, empty input = the original question, ``debate_roles`` as a list).
"""

from experiments.masbench.generator import Problem

GOOD_SYSTEM = """<thinking>solve, then check</thinking>
<agent><agent_id>solve</agent_id><agent_name>CoTAgent</agent_name><agent_description>solve</agent_description>
<required_arguments><agent_input></agent_input></required_arguments></agent>
<agent><agent_id>check</agent_id><agent_name>ReflexionAgent</agent_name><agent_description>check</agent_description>
<required_arguments><agent_input>Verify and finalise this draft: ${{solve}}{extra}</agent_input></required_arguments></agent>
<edge><from>solve</from><to>check</to></edge>"""

SEED_SINGLE = """Question: What is 17 cubed?
  <thinking>
    Arithmetic slips are easy here, so sample several reasoning paths and keep the majority.
    The SCAgent's output is the final answer.
  </thinking>
  <agent>
    <agent_id>cube_agent</agent_id>
    <agent_name>SCAgent</agent_name>
    <agent_description>Cubes a number with self-consistency.</agent_description>
    <required_arguments>
      <agent_input>""</agent_input>
    </required_arguments>
  </agent>"""

SEED_DEBATE = """<thinking>Two perspectives settle a near tie; the DebateAgent answers.</thinking>
<agent>
  <agent_id>tie_break</agent_id>
  <agent_name>DebateAgent</agent_name>
  <agent_description>Near-tie numeric choice with one debate.</agent_description>
    <required_arguments>
      <agent_input></agent_input>
      <debate_roles>["Number Theorist", 'Careful Accountant']</debate_roles>
    </required_arguments>
</agent>"""

SEED_GRAPH = """<thinking>
  Look the fact up, have two roles argue the arithmetic from it, then reflect once more.
  ReflexionAgent R1 gives the final answer.
</thinking>
<agent>
  <agent_id>WS_1</agent_id>
  <agent_name>WebSearchAgent</agent_name>
  <agent_description>Finds how many moons Mars has.</agent_description>
  <required_arguments>
    <agent_input>How many moons does Mars have?</agent_input>
  </required_arguments>
</agent>
<agent>
  <agent_id>D_2</agent_id>
  <agent_name>DebateAgent</agent_name>
  <agent_description>Computes the answer from the fact.</agent_description>
  <required_arguments>
    <agent_input>Using this fact: ${WS_1} -- multiply the number of moons by 21.</agent_input>
    <debate_roles>["Astronomer", "Mathematics Professor"]</debate_roles>
  </required_arguments>
</agent>
<agent>
  <agent_id>R1</agent_id>
  <agent_name>ReflexionAgent</agent_name>
  <agent_description>Checks the product and states the final answer.</agent_description>
  <required_arguments>
    <agent_input>Check this computation and give the final answer: ${D_2}</agent_input>
  </required_arguments>
</agent>
<edge>
  <from>WS_1</from><to>D_2</to>
  <from>D_2</from><to>R1</to>
</edge>"""


def oracle_text(problems: list[Problem], prompt: str) -> str:
    """A solver that 'knows' the gold answers of the problem quoted in the prompt."""
    for p in problems:
        if p.question.split("\n")[0][:60] in prompt:
            return "Step by step... " + " ".join(f"\\boxed{{{a}}}" for a in p.answers)
    return "I am not sure. \\boxed{0}"


def last_user(request) -> str:
    return [m["content"] for m in request.messages if m["role"] == "user"][-1]


def system_of(request) -> str:
    return next((m["content"] for m in request.messages if m["role"] == "system"), "")


def is_orchestrator(request) -> bool:
    return "computational graph" in system_of(request)


def research_turn(request, query, answer):
    """The search agent's loop as a tool-calling model plays it: search once with ``query(user)``, then answer with
    ``answer(tool results)``; None when ``request`` is not a research turn."""
    from jaxlab.llm import tool_reply

    if not any(t["function"]["name"] == "web_search" for t in request.tools):
        return None
    results = [m["content"] for m in request.messages if m["role"] == "tool"]
    if not results:
        return tool_reply("web_search", {"search_query": query(last_user(request))})
    return answer("\n".join(results))
