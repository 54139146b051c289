"""MAS-Orchestra under GRPO: the reward executes the orchestrator's whole system, and a GRPO step trains on it."""

import jax
import numpy as np
import pytest

from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig
from experiments.grpo.mas_tasks import OrchestraSection, orchestra_tasks
from experiments.grpo.rewards import RewardSpec
from experiments.grpo.rewards.orchestra import OrchestraRewards, format_score
from experiments.grpo.rollout import RolloutConfig
from experiments.grpo.tasks import byte_codec
from experiments.mas_orchestra.subagents import Settings
from jaxlab.llm.scripted import ScriptedClient, echo_client
from jaxlab.llm.types import LLMError
from jaxlab.models import init_model
from jaxlab.models.config import tiny_config

TASK = orchestra_tasks("train", OrchestraSection(axes=("depth",), levels=(2,), train_per_level=1))[0]
GOLD = TASK.problem.answers[0]


def _agent(agent_id, name, task, extra=""):
    return (
        f"<agent><agent_id>{agent_id}</agent_id><agent_name>{name}</agent_name><agent_description>d"
        f"</agent_description><required_arguments><agent_input>{task}</agent_input>{extra}"
        f"</required_arguments></agent>"
    )


TWO_STEP = (
    "<thinking>solve then check</thinking>"
    + _agent("A1", "CoTAgent", '""')
    + _agent("A2", "ReflexionAgent", "check ${A1}")
    + "<edge><from>A1</from><to>A2</to></edge>"
)
CYCLE = (
    _agent("A1", "CoTAgent", "use ${A2}")
    + _agent("A2", "CoTAgent", "use ${A1}")
    + "<edge><from>A1</from><to>A2</to><from>A2</from><to>A1</to></edge>"
)
UNKNOWN = _agent("A1", "OracleAgent", '""')
BROKEN = "<agent><agent_id>A1</agent_id><agent_name>CoTAgent</agent_name></agent>"


def _solver(answer):
    """Sub-agents that always reply with ``answer`` boxed (the critic accepts at once)."""
    return ScriptedClient(responder=lambda req: f"The answer is \\boxed{{{answer}}}. correct: True")


def _score(client, texts):
    r = OrchestraRewards(client, Settings(sc_samples=2, debate_rounds=1, reflexion_rounds=1), max_tokens=16)
    f = TASK.fields()
    n = len(texts)
    values, info = r.reward(
        [""] * n, texts, question=[f["question"]] * n, answers=[f["answers"]] * n, problem_id=[f["problem_id"]] * n
    )
    return values, info, r.last


def test_reward_executes_the_system_and_scores_its_answer():
    values, info, results = _score(_solver(GOLD), [TWO_STEP, CYCLE, UNKNOWN, BROKEN, "no system here"])
    assert values == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0])
    assert [r.stage for r in results] == ["ok", "validate", "validate", "parse", "no_agent"]
    assert [r.error_kind for r in results[1:3]] == ["cycle", "unknown_agent"]
    assert info["valid_rate"] == pytest.approx(0.2) and info["parse_rate"] == pytest.approx(0.6)
    assert info["error/cycle"] == pytest.approx(0.2)
    wrong = str(int(GOLD) + 1)
    assert _score(_solver(wrong), [TWO_STEP])[0] == pytest.approx([0.1])  # executes, wrong answer
    assert _score(echo_client(), [TWO_STEP])[0] == pytest.approx([0.1])


def test_a_failing_subagent_is_a_scored_execution_failure():
    def fail(req):
        raise LLMError("backend down")

    values, info, results = _score(ScriptedClient(responder=fail), [TWO_STEP])
    assert values == [0.0] and results[0].stage == "execute" and results[0].error_kind == "execution"


def test_format_ladder():
    assert [format_score(t) for t in ("x", BROKEN, CYCLE, TWO_STEP)] == [0.0, 0.25, 0.5, 1.0]


def test_grpo_step_trains_on_the_orchestra_reward():
    """A real rollout of the tiny policy whose texts are replaced by systems (a random model writes none): the
    Orchestra reward gives the groups a spread, so the step computes advantages and updates the policy."""
    model = init_model(tiny_config("llama", num_layers=1, intermediate_size=64, max_position_embeddings=512), 0)
    rewards = OrchestraRewards(_solver(GOLD), Settings(sc_samples=2, debate_rounds=1, reflexion_rounds=1), 16)
    codec = byte_codec()
    learner = GRPOLearner(
        model,
        decode=codec.decode,
        eos_id=0,
        pad_id=0,
        rewards=[RewardSpec("mas_orchestra"), RewardSpec("mas_format", 0.2)],
        rollout=RolloutConfig(num_generations=4, max_new_tokens=8, temperature=1.0),
        loss=LossConfig(loss_type="dapo", beta=0.0),
        grpo=GRPOConfig(micro_batch=8),
        optim=__import__("jaxlab.train.optim", fromlist=["OptimConfig"]).OptimConfig(
            learning_rate=1e-2, warmup_steps=0, decay_steps=100, weight_decay=0.0
        ),
        reward_fns=rewards.functions(),
    )
    real = learner.rollout

    def rollout(prompt_ids, key):
        ro = real(prompt_ids, key)
        ro.texts = [TWO_STEP, CYCLE, "nothing", BROKEN] * (len(ro.texts) // 4)
        return ro

    learner.rollout = rollout
    before = [np.asarray(x).copy() for x in jax.tree.leaves(learner.state.params)]
    tasks = [TASK, TASK]
    fields = {k: [t.fields()[k] for t in tasks] for k in TASK.fields()}
    m = learner.step([codec.encode(t) for t in tasks], [t.question for t in tasks], fields, jax.random.key(0))
    assert m["rewards/mas_orchestra/mean"] == pytest.approx(0.25)
    assert m["rewards/mas_orchestra/execution_rate"] == pytest.approx(0.25)
    assert m["rewards/mas_format/mean"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert m["reward"] == pytest.approx(0.25 + 0.2 * 0.4375)
    assert np.isfinite(m["loss"]) and m["grad_norm"] > 0
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before, jax.tree.leaves(learner.state.params)))
    assert [r["mas_orchestra"] for r in learner.last_samples[:4]] == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_tiny_config_runs_and_reports_validity(tmp_path):
    from jaxlab.cli import load_run_config

    runner, cfg = load_run_config(
        "configs/grpo_mas_orchestra_tiny.yaml", [f"output_dir={tmp_path}", "progress=false", "steps=1"]
    )
    result = runner.run(cfg)
    for side in ("before", "after"):
        report = result[side]["heldout_masbench"]
        assert report["n"] == 2 and {"parse_rate", "valid_rate", "execution_rate", "accuracy"} <= set(report)
    rows = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 4 and all('"stage": "no_agent"' in r for r in rows)  # a random byte model writes no system
