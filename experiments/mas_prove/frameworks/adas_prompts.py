"""ADAS Meta Agent Search prompts and seed agents, in the interface the authors' generated agents use.

Source: Wang-ML-Lab/MAS-ProVe ``mas/adas/_aime/aime_prompt.py`` and ``search.py`` (after ShengranHu/ADAS).
Quoted verbatim: the meta agent's system prompt, the fitness and output instructions, both Reflexion prompts,
the debug message, ``FORMAT_INST`` / ``ROLE_DESC`` and the answer-field descriptions (AIME: MAS-ProVe; GSM8K:
ADAS ``_mgsm``).  Condensed (ours): the "utility code" section of the meta prompt is described instead of
listed, and the four "WRONG Implementation examples" are stated as rules.  The seven seed agents are written
here against the same ``LLMAgentBase`` / ``Info`` interface, with the authors' instructions, agent counts,
rounds, roles and temperatures.
"""

from __future__ import annotations

import json

META_SYSTEM = "You are a helpful assistant. Make sure to return in a WELL-FORMED JSON object."

FORMAT_INST = (
    "Reply EXACTLY with the following JSON format.\n{keys}\nDO NOT MISS ANY REQUEST FIELDS and ensure that "
    "your response is a well-formed JSON object!\n"
)
ROLE_DESC = "You are a {role}."

ANSWER_DESC = {
    "aime24": "Your {key}. Return ONLY the final answer as an integer (e.g., 120).",
    "aime25": "Your {key}. Return ONLY the final answer as an integer (e.g., 120).",
    "gsm8k": "Your {key}. Return ONLY an integer. DO NOT return anything other than the integer answer.",
}
"""The ``answer`` output field's description per benchmark, verbatim where the authors have one."""
ANSWER_DESC_DEFAULT = "Your {key}. Give only the final answer, in the form the task asks for (e.g. \\boxed{{}})."
"""Ours, for benchmarks without an authors' ADAS domain (MATH, MASBench, HumanEval)."""

DOMAIN = {
    "aime": (
        "Your aim is to design an optimal agent that performs well on the American Invitational Mathematics "
        "Examination (AIME) 2024 and 2025 problems, which evaluate advanced mathematical problem-solving "
        "abilities at the high school level.\n\n## An example question from AIME 2024/2025:\n\n**Question**: "
        "Let $a$, $b$, and $c$ be positive integers such that $a + b + c = 24$ and $a^2 + b^2 + c^2 = 194$. "
        "Find the value of $abc$.\n\n**Answer (Not Given)**: 120"
    ),
}
DOMAIN_DEFAULT = "Your aim is to design an optimal agent that performs well on the tasks of this benchmark ({name})."

EXAMPLE = {
    "thought": "**Insights:**\nYour insights on what should be the next interesting agent.\n**Overall Idea:**\nyour "
    "reasoning and the overall concept behind the agent design.\n**Implementation:**\ndescribe the "
    "implementation step by step.",
    "name": "Name of your proposed agent",
    "code": "async def forward(self, taskInfo):\n    # Your code here\n    return answer\n",
}

_INTERFACE = """# The utility code (available to your code; do not redefine it):

- `Info = namedtuple('Info', ['name', 'author', 'content', 'iteration_idx'])`; `taskInfo` is an `Info` whose \
content is the task.
- `LLMAgentBase(output_fields: list, agent_name: str, role='helpful assistant', temperature=0.5)`: an LLM agent whose \
system prompt is `You are a {role}.` plus a request to reply with a JSON object holding exactly `output_fields`.
- `await agent(input_infos: list, instruction, iteration_idx=-1)` shows the agent every `Info` in `input_infos` \
(the task first, then "### {name} by {author}:" sections) followed by `instruction`, and returns one `Info` per \
output field, in order (e.g. `thinking, answer = await agent([taskInfo], instruction)`).
- Your agent is `async def forward(self, taskInfo)` and returns its FINAL answer: an `Info` or a string."""

_RULES = """## WRONG Implementation examples:

Here are some mistakes you may make:

1. It is wrong to create `Info(...)` objects yourself (e.g. `Info('feedback', 'Critic Agent', thinking, 0)`): \
the returned outputs from LLMAgentBase are already Info.
2. You should never return an error message. You should always return the best answer you can get. You should \
never print anything in the code. `len()` of an agent's outputs will not work as a check.
3. You SHOULD NOT extract the content from the Info object by yourself. You should use the Info object directly. \
If you want to aggregate the content, you should just put those Info objects into a list and then use the list as \
input to the next LLM agent.
4. You should not extract the final answer by yourself. You SHOULD directly return the answer Info. CORRECT \
example: `thinking, answer = await reasoning_agent([taskInfo] + ..., reasoning_instruction)` then `return answer`."""

BASE = """# Overview
You are an expert machine learning researcher testing various agentic systems. Your objective is to design \
building blocks such as prompts and control flows within these systems to solve complex tasks. [DOMAIN]

[INTERFACE]

# Discovered architecture archive

Here is the archive of the discovered architectures:

[ARCHIVE]

The fitness value is the median and 95% Bootstrap Confidence Interval of the correct rate on a validation question \
set. Your GOAL is to maximize the "fitness".

# Output Instruction and Example:

The first key should be ("thought"), and it should capture your thought process for designing the next function. \
In the "thought" section, first reason about what should be the next interesting agent to try, then describe your \
reasoning and the overall concept behind the agent design, and finally detail the implementation steps.
The second key ("name") corresponds to the name of your next agent architecture.
Finally, the last key ("code") corresponds to the exact “forward()” function in Python code that you would like to \
try. You must write a COMPLETE CODE in "code": Your code will be part of the entire project, so please implement \
complete, reliable, reusable code snippets.

Here is an example of the output format for the next agent architecture:

[EXAMPLE]

You must use the exact function interface used above. You need to specify the instruction, input information, and \
the required output fields for various LLM agents to do their specific part of the architecture.
Also, it could be helpful to set the LLM’s role and temperature to further control the LLM’s response. Note that \
the LLMAgentBase() will automatically parse the output and return a list of “Infos”. You can get the content by \
Infos.content.
DO NOT FORGET the taskInfo input to LLM if you think it is needed, otherwise LLM will not know about the task.

[RULES]

# Your task
You are deeply familiar with LLM prompting techniques and LLM agent works from the literature. Your goal is to \
maximize "fitness" by proposing interestingly new agents.
Observe the discovered architectures carefully and think about what insights, lessons, or stepping stones can be \
learned from them.
Be creative to think about the next interesting architecture to try. You are encouraged to draw inspiration from \
related LLM agent papers or academic papers from other research areas.
Using the knowledge learned from the archive and the inspiration from academic literature to give the next \
interesting architecture.
THINK OUTSIDE THE BOX.
"""

REFLEXION_1 = """"[EXAMPLE]Carefully review the proposed new architecture and reflect on the following points:"

1. **Interestingness**: Assess whether your proposed architecture is interesting or innovative compared to existing \
methods in the archive. If you determine that the proposed architecture is not interesting, suggest a new \
architecture that addresses these shortcomings.
- Make sure to check the difference between the proposed architecture and previous attempts.
- Compare the proposal and the architectures in the archive CAREFULLY, including their actual differences in the \
implementation.
- Decide whether the current architecture is innovative.
- USE CRITICAL THINKING!

2. **Implementation Mistakes**: Identify any mistakes you may have made in the implementation. Review the code \
carefully, debug any issues you find, and provide a corrected version. REMEMBER checking "## WRONG Implementation \
examples" in the prompt.

3. **Improvement**: Based on the proposed architecture, suggest improvements in the detailed implementation that \
could increase its performance or effectiveness. In this step, focus on refining and optimizing the existing \
implementation without altering the overall design framework, except if you want to propose a different \
architecture if the current is not interesting.
- Observe carefully about whether the implementation is actually doing what it is supposed to do.
- Check if there is redundant code or unnecessary steps in the implementation. Replace them with effective \
implementation.
- Try to avoid the implementation being too similar to the previous agent.

And then, you need to improve or revise the implementation, or implement the new proposed architecture based on \
the reflection.

Your response should be organized as follows:

"reflection": Provide your thoughts on the interestingness of the architecture, identify any mistakes in the \
implementation, and suggest improvements.

"thought": Revise your previous proposal or propose a new architecture if necessary, using the same format as the \
example response.

"name": Provide a name for the revised or new architecture. (Don't put words like "new" or "improved" in the name.)

"code": Provide the corrected code or an improved implementation. Make sure you actually implement your fix and \
improvement in this code.
"""

REFLEXION_2 = """Using the tips in "## WRONG Implementation examples" section, revise the code further.
Your response should be organized as follows:
Put your new reflection thinking in "reflection". Repeat the previous "thought" and "name", and update the \
corrected version of the code in "code".
"""

DEBUG = "Error during evaluation:\n{error}\nCarefully consider where you went wrong..."
ALL_ZERO = "All 0 accuracy"


def answer_desc(benchmark: str) -> str:
    return ANSWER_DESC.get(benchmark, ANSWER_DESC_DEFAULT)


def meta_prompt(archive: list[dict], benchmark: str = "") -> str:
    """The authors' ``get_prompt``: the archive as a JSON list of solutions, the example as JSON."""
    domain = DOMAIN["aime"] if benchmark.startswith("aime") else DOMAIN_DEFAULT.format(name=benchmark or "unnamed")
    listing = "[" + ",\n".join(json.dumps(sol) for sol in archive) + "]"
    return (
        BASE.replace("[DOMAIN]", domain)
        .replace("[INTERFACE]", _INTERFACE)
        .replace("[RULES]", _RULES)
        .replace("[ARCHIVE]", listing)
        .replace("[EXAMPLE]", json.dumps(EXAMPLE))
    )


def reflexion_prompts(previous: dict | None) -> tuple[str, str]:
    """The authors' ``get_reflexion_prompt``: round 1 shows the previous generation's agent when there is one."""
    shown = "Here is the previous agent you tried:\n" + json.dumps(previous) + "\n\n" if previous else ""
    return REFLEXION_1.replace("[EXAMPLE]", shown), REFLEXION_2


_STEP = "Please think step by step and then solve the task."
SEEDS: dict[str, tuple[str, str]] = {
    "Chain-of-Thought": (
        "By encouraging the LLM to think step by step rather than directly outputting an answer, chain-of-thought "
        "reasoning enables complex problem-solving through intermediate steps.",
        f'''
async def forward(self, taskInfo):
    cot_agent = LLMAgentBase(['thinking', 'answer'], 'Chain-of-Thought Agent')
    thinking, answer = await cot_agent([taskInfo], "{_STEP}")
    return answer
''',
    ),
    "Self-Consistency with Chain-of-Thought": (
        "Sample several reasoning paths at a higher temperature and ensemble their answers by majority vote.",
        f'''
async def forward(self, taskInfo):
    from collections import Counter
    agents = [LLMAgentBase(['thinking', 'answer'], 'Chain-of-Thought Agent', temperature=0.8) for _ in range(5)]
    answers = []
    for agent in agents:
        thinking, answer = await agent([taskInfo], "{_STEP}")
        answers.append(answer.content)
    return Counter(answers).most_common(1)[0][0]
''',
    ),
    "Self-Refine (Reflexion)": (
        "Iteratively improve the answer from a critic's feedback on the previous attempts.",
        f'''
async def forward(self, taskInfo):
    cot_agent = LLMAgentBase(['thinking', 'answer'], 'Chain-of-Thought Agent')
    critic_agent = LLMAgentBase(['feedback', 'correct'], 'Critic Agent')
    reflect = ("Given previous attempts and feedback, carefully consider where you could go wrong in your latest "
               "attempt. Using insights from previous attempts, try to solve the task better.")
    critic = ("Please review the answer above and criticize on where might be wrong. If you are absolutely sure it "
              "is correct, output 'True' in 'correct'.")
    inputs = [taskInfo]
    thinking, answer = await cot_agent(inputs, "{_STEP}", 0)
    for i in range(5):
        feedback, correct = await critic_agent([taskInfo, thinking, answer], critic, i)
        if correct.content == 'True':
            break
        inputs.extend([thinking, answer, feedback])
        thinking, answer = await cot_agent(inputs, reflect, i + 1)
    return answer
''',
    ),
    "LLM Debate": (
        "Agents with different roles debate for two rounds; a final decision agent reads the last round.",
        f'''
async def forward(self, taskInfo):
    roles = ['Math Professor', 'Grade School Teacher', 'Math Enthusiast']
    agents = [LLMAgentBase(['thinking', 'answer'], 'Debate Agent', temperature=0.8, role=r) for r in roles]
    final_agent = LLMAgentBase(['thinking', 'answer'], 'Final Decision Agent', temperature=0.1)
    debate = ("Given solutions to the problem from other agents, consider their opinions as additional advice. "
              "Please think carefully and provide an updated answer.")
    thinking, answers = [[], []], [[], []]
    for r in range(2):
        for i, agent in enumerate(agents):
            if r == 0:
                t, a = await agent([taskInfo], "{_STEP}")
            else:
                prev = thinking[0]
                t, a = await agent([taskInfo, prev[i]] + prev[:i] + prev[i + 1:], debate)
            thinking[r].append(t)
            answers[r].append(a)
    t, answer = await final_agent([taskInfo] + thinking[1] + answers[1], "Given all the above thinking and answers, "
                                  "reason over them carefully and provide a final answer.")
    return answer
''',
    ),
    "Step-back Abstraction": (
        "First think about the principles involved, then solve the task with them.",
        """
async def forward(self, taskInfo):
    principle_agent = LLMAgentBase(['thinking', 'principle'], 'Principle Agent')
    cot_agent = LLMAgentBase(['thinking', 'answer'], 'Chain-of-Thought Agent')
    thinking, principle = await principle_agent([taskInfo], "What are the physics, chemistry or biology principles "
        "and concepts involved in solving this task? First think step by step. Then list all involved principles "
        "and explain them.")
    thinking, answer = await cot_agent([taskInfo, thinking, principle], "Given the question and the involved "
        "principle behind the question, think step by step and then solve the task.")
    return answer
""",
    ),
    "Quality-Diversity": (
        "Generate diverse solutions from earlier attempts, then let a final agent decide.",
        f'''
async def forward(self, taskInfo):
    cot_agent = LLMAgentBase(['thinking', 'answer'], 'Chain-of-Thought Agent')
    final_agent = LLMAgentBase(['thinking', 'answer'], 'Final Decision Agent', temperature=0.1)
    inputs, possible = [taskInfo], []
    thinking, answer = await cot_agent(inputs, "{_STEP}", 0)
    possible.extend([thinking, answer])
    for i in range(3):
        inputs.extend([thinking, answer])
        thinking, answer = await cot_agent(inputs, "Given previous attempts, try to come up with another "
                                           "interesting way to solve the task.", i + 1)
        possible.extend([thinking, answer])
    thinking, answer = await final_agent([taskInfo] + possible, "Given all the above solutions, reason over them "
                                         "carefully and provide a final answer.")
    return answer
''',
    ),
    "Dynamic Assignment of Roles": (
        "A routing agent decides which expert should answer the task.",
        f'''
async def forward(self, taskInfo):
    roles = ['Math Professor', 'Grade School Teacher', 'Math Enthusiast', 'Helpful Assistant']
    experts = [LLMAgentBase(['thinking', 'answer'], 'Expert Agent', role=r) for r in roles]
    router = LLMAgentBase(['choice'], 'Routing agent')
    choice = (await router([taskInfo], "Given the task, please choose an Expert to answer the question. Choose "
                           "from: Math Professor, Grade School Teacher, Math Enthusiast."))[0]
    text = str(choice.content).lower()
    expert = 0 if 'professor' in text else 1 if 'teacher' in text else 2 if 'enthusiast' in text else 3
    thinking, answer = await experts[expert]([taskInfo], "{_STEP}")
    return answer
''',
    ),
}
