"""Scripted stand-ins for a model, shared by the MAS tests."""
from experiments.masbench.generator import Problem

GOOD_SYSTEM = """<thinking>solve, then check</thinking>
<agent><agent_id>solve</agent_id><agent_name>CoTAgent</agent_name><agent_description>solve</agent_description>
<required_arguments><task>{task}</task></required_arguments></agent>
<agent><agent_id>check</agent_id><agent_name>ReflexionAgent</agent_name><agent_description>check</agent_description>
<required_arguments><task>Verify and finalise the answer to: {task}
Draft: ${{solve}}</task><max_rounds>1</max_rounds></required_arguments></agent>
<edge><from>solve</from><to>check</to></edge>"""


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
