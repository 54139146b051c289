"""Run one ADAS agent (``async def forward(self, taskInfo)``) on one task inside :mod:`jaxlab.sandbox`.

The sandbox program re-creates the authors' agent runtime (MAS-ProVe ``mas/adas/_aime/search.py``): ``Info``,
``LLMAgentBase`` with their prompt layout (``ROLE_DESC`` + ``FORMAT_INST`` system prompt; "# Your Task:" and
"### {field} by {author}:" sections; empty fields when the reply is not a JSON object with every field), the
one-definition namespace check, and the agent bound to an ``AgentSystem`` instance.  Every LLM query goes back to
this process over ``rpc`` and becomes a ``ctx.agent`` turn, so agent-level verification sees inside generated
agents; nothing generated is ever executed in this process.  ``random`` is seeded so the agents' random ids (which
appear in prompts) are the same on a rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from experiments.mas_prove.core import MASContext
from experiments.mas_prove.frameworks.adas_prompts import FORMAT_INST, ROLE_DESC
from jaxlab.sandbox import run_python

_RESULT, _DEFINE, _RUNTIME = "__ADAS_RESULT__", "__ADAS_DEFINE_ERROR__", "__ADAS_RUNTIME_ERROR__"

_PROGRAM = r"""
import asyncio, json, random, string, types
from collections import namedtuple

Info = namedtuple('Info', ['name', 'author', 'content', 'iteration_idx'])
FORMAT_INST = lambda keys: __FORMAT_INST__.format(keys=str(keys))
ROLE_DESC = lambda role: __ROLE_DESC__.format(role=role)
ANSWER_DESC = __ANSWER_DESC__
random.seed(__SEED__)


def random_id(length=4):
    return ''.join(random.choices(string.ascii_letters + string.digits, k=length))


class LLMAgentBase:
    def __init__(self, output_fields, agent_name, role='helpful assistant', model=None, temperature=0.5):
        self.output_fields, self.agent_name, self.role = list(output_fields), agent_name, role
        self.temperature, self.id = temperature, random_id()

    def generate_prompt(self, input_infos, instruction):
        fields = {k: ANSWER_DESC.format(key=k) if 'answer' in k else f"Your {k}." for k in self.output_fields}
        system = ROLE_DESC(self.role) + "\n\n" + FORMAT_INST(fields)
        text = ''
        for info in input_infos:
            if not isinstance(info, Info):
                continue
            name, author, content, idx = info
            if author == repr(self):
                author += ' (yourself)'
            if name == 'task':
                text += f'# Your Task:\n{content}\n\n'
            elif idx != -1:
                text += f'### {name} #{idx + 1} by {author}:\n{content}\n\n'
            else:
                text += f'### {name} by {author}:\n{content}\n\n'
        return system, text + instruction

    async def query(self, input_infos, instruction, iteration_idx=-1):
        system, prompt = self.generate_prompt(input_infos, instruction)
        reply = rpc("agent", name=self.agent_name, system=system, prompt=prompt,
                    round=max(int(iteration_idx), 0), temperature=float(self.temperature))
        try:
            data = json.loads(reply[reply.index('{'):reply.rindex('}') + 1])
            assert isinstance(data, dict) and len(data) == len(self.output_fields), "not returning enough fields"
        except Exception:
            data = {k: '' for k in self.output_fields}
        return [Info(k, repr(self), v, iteration_idx) for k, v in data.items()]

    def __repr__(self):
        return f"{self.agent_name} {self.id}"

    async def __call__(self, input_infos, instruction, iteration_idx=-1):
        return await self.query(input_infos, instruction, iteration_idx=iteration_idx)


class AgentSystem:
    pass


try:
    namespace = {}
    exec(__CODE__, globals(), namespace)
    names = list(namespace)
    if len(names) != 1:
        raise AssertionError(f"{len(names)} things in namespace. Please only provide 1")
    func = namespace[names[0]]
    if not callable(func):
        raise AssertionError(f"{func} is not callable")
    system = AgentSystem()
    system.forward = types.MethodType(func, system)
except Exception as e:
    print("__DEFINE__" + json.dumps(f"{type(e).__name__}: {e}"))
    raise SystemExit(0)
try:
    res = asyncio.run(system.forward(Info('task', 'User', __TASK__, -1)))
    print("__RESULT__" + json.dumps(str(res.content if isinstance(res, Info) else res)))
except Exception as e:
    print("__RUNTIME__" + json.dumps(f"{type(e).__name__}: {e}"))
"""


@dataclass(frozen=True)
class AgentRun:
    """``status``: ok | definition (the code does not define one callable: the meta agent must fix it) |
    runtime (forward raised, timed out or was killed: the task scores 0, as in the authors' gather)."""

    status: str
    answer: str = ""
    error: str = ""


def program(code: str, task: str, answer_desc: str, seed: int) -> str:
    return (
        _PROGRAM.replace("__FORMAT_INST__", repr(FORMAT_INST))
        .replace("__ROLE_DESC__", repr(ROLE_DESC))
        .replace("__ANSWER_DESC__", repr(answer_desc))
        .replace("__SEED__", str(int(seed)))
        .replace("__DEFINE__", _DEFINE)
        .replace("__RESULT__", _RESULT)
        .replace("__RUNTIME__", _RUNTIME)
        .replace("__TASK__", repr(task))
        .replace("__CODE__", repr(code))
    )


def run_agent(ctx: MASContext, code: str, answer_desc: str, timeout_s: float = 120.0) -> AgentRun:
    """Run ``code``'s ``forward`` on ``ctx.task`` in the sandbox; each LLM query is a ``ctx.agent`` turn."""

    def handler(method: str, params: dict) -> str:
        if method != "agent":
            raise ValueError(f"unknown rpc method {method!r}")
        return ctx.agent(
            str(params["name"]), int(params.get("round", 0)), str(params["prompt"]), system=str(params["system"])
        )

    res = run_python(
        program(code, ctx.task, answer_desc, ctx.position_seed("adas-random")),
        timeout_s=timeout_s,
        memory_mb=512,
        rpc=handler,
    )
    for line in reversed(res.stdout.splitlines()):
        for marker, status in ((_RESULT, "ok"), (_DEFINE, "definition"), (_RUNTIME, "runtime")):
            if line.startswith(marker):
                value = json.loads(line[len(marker) :])
                return AgentRun(status, value, "") if status == "ok" else AgentRun(status, "", value)
    return AgentRun("runtime", "", f"agent process {res.status}: {res.stderr.strip()[-500:]}")
