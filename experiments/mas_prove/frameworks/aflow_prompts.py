"""AFlow's workflow-optimisation prompt, adapted to workflows stored as data.

Source: Wang-ML-Lab/MAS-ProVe ``mas/aflow/scripts/prompts/optimize_prompt.py`` (after FoundationAgents/AFlow) and
``optimizer_utils/experience_utils.py``.  Verbatim: the ``<sample>`` block with its experience / modification /
score / graph / prompt / operator-description fields, the "one detail point at a time" rule, the experience
text (including its "Absolutely prohibit" for successes too), the operator descriptions of the AIME template
(``workspace/AIME24/workflows/template/operator.json``).  Ours: the graph is a JSON list of operator nodes, not
a Python ``Workflow`` class, so the Python-specific parts (imports, the tool-calling properties, "5 lines of
code") are replaced by a description of that format; nothing the optimiser writes is executed as code.
"""

from __future__ import annotations

OPERATOR_DESCRIPTION = {
    "Custom": {
        "description": "Generates anything based on customized input and instruction.",
        "interface": "custom(input: str, instruction: str) -> dict with key 'response' of type str",
    },
    "ScEnsemble": {
        "description": "Uses self-consistency to select the solution that appears most frequently in the "
        "solution list, improve the selection to enhance the choice of the best solution.",
        "interface": "sc_ensemble(solutions: List[str], problem: str) -> dict with key 'response' of type str",
    },
    "Programmer": {
        "description": "Automatically writes, executes Python code, and returns the solution based on the "
        "provided problem description and analysis. The `output` only contains the final "
        "answer. If you want to see the detailed solution process, it's recommended to "
        "retrieve the `code`.",
        "interface": "programmer(problem: str, analysis: str = 'None') -> dict with keys 'code' and "
        "'output' of type str",
    },
}

WORKFLOW_OPTIMIZE = """You are building a Graph and corresponding Prompt to jointly solve {type} problems.
Referring to the given graph and prompt, which forms a basic example of a {type} solution approach,
please reconstruct and optimize them. You can add, modify, or delete nodes, parameters, or prompts. Include your
single modification in XML tags in your reply. Ensure they are complete and correct to avoid runtime failures. When
optimizing, you can incorporate critical thinking methods like review, revise, ensemble (generating multiple answers \
through different/similar prompts, then voting/integrating/checking the majority to obtain a final answer), selfAsk, \
etc. The graph complexity should not exceed 10. Ensure that all the prompts required by the current graph from \
prompt_custom are included. Exclude any other prompts.
Output the modified graph and all the necessary Prompts in prompt_custom (if needed).
the generated prompt must not contain any placeholders.
Considering information loss, complex graphs may yield better results, but insufficient information transmission \
can omit the solution. It's crucial to include necessary context during the process.

The graph format (this implementation's): a JSON list of nodes run in order, each
{{"id": str, "op": one of {ops}, "in": [earlier node ids or "problem"], "prompt": NAME (Custom only)}}.
Custom concatenates its instruction (prompt_custom.NAME, or "" when no prompt is given) with its first input;
Programmer reads "problem" and, optionally, a second input as its analysis; ScEnsemble votes over its inputs.
The last node's output is the workflow's answer. Reply with <modification>...</modification>,
<graph>[...JSON nodes...]</graph> and <prompt>NAME = \"\"\"...\"\"\" lines</prompt>."""

WORKFLOW_INPUT = """
Here is a graph and the corresponding prompt (prompt only related to the custom method) that performed excellently \
in a previous iteration (maximum score is 1). You must make further optimizations and improvements based on this \
graph. The modified graph must differ from the provided example, and the specific differences should be noted \
within the <modification>xxx</modification> section.

<sample>
    <experience>{experience}</experience>
    <modification>(such as:add /delete /modify/ ...)</modification>
    <score>{score}</score>
    <graph>{graph}</graph>
    <prompt>{prompt}</prompt>(only prompt_custom)
    <operator_description>{operator_description}</operator_description>
</sample>
Below are the logs of some results with the aforementioned Graph that performed well but encountered errors, which \
can be used as references for optimization:
{log}

First, provide optimization ideas. **Only one detail point can be modified at a time**, and no more than one node \
may be added, removed or changed per modification—extensive modifications are strictly prohibited to maintain \
project focus!
**Under no circumstances should Graph output None for any field.**
Use custom methods to restrict your output format, rather than using code (outside of the code, the system will \
extract answers based on certain rules and score them).
It is very important to format the Graph output answers, you can refer to the standard answer format in the log.
"""

EXPERIENCE_HEAD = "Original Score: {score}\nThese are some conclusions drawn from experience:\n\n"
EXPERIENCE_NOTE = (
    "\n\nNote: Take into account past failures and avoid repeating the same mistakes, as these failures "
    "indicate that these approaches are ineffective. You must fundamentally change your way of "
    "thinking, rather than simply using more advanced Python syntax like for, if, else, etc., or "
    "modifying the prompt."
)
NO_EXPERIENCE = "No experience data found for round {round}."


def operator_description(ops: tuple[str, ...]) -> str:
    """The authors' ``load_operators_description``: one numbered line per operator."""
    return "".join(
        f"{i + 1}. {op}: {OPERATOR_DESCRIPTION[op]['description']}, with interface "
        f"{OPERATOR_DESCRIPTION[op]['interface']}).\n"
        for i, op in enumerate(ops)
    )
