"""The ORM and PRM verifiers with real (tiny) reward models behind them: a sequence classifier and a
Qwen-PRM-style step scorer, trained here for a few seconds on the SmolLM2 tokenizer's chat template, then
asked through the verifier to rank a planted correct candidate among wrong ones.

The models are random-init jaxlab ``RewardModel``s: the point is the path (chat template -> tokens ->
score head -> pooling at the last token / at the ``<extra_0>`` separators -> ranking), which a scripted
chat model cannot exercise."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.mas_prove.core import Meter
from experiments.mas_prove.reward_scorers import SequenceRewardScorer, StepRewardScorer
from experiments.mas_prove.verifiers import STEP_SEPARATOR, make_verifier, prm_messages
from jaxlab.llm import ScriptedClient
from jaxlab.models import tiny_config
from jaxlab.models.reward import RewardModel, sequence_scores

SUMS = [(1, 1), (2, 3), (4, 4), (6, 5), (9, 5)]  # sums 3 apart: a wrong answer is never another task's sum


def _task(a, b):
    return f"What is {a} + {b}?"


def _solution(a, b, answer):
    return f"{a} + {b} = {answer}.\n\nSo the answer is \\boxed{{{answer}}}."


@pytest.fixture(scope="module")
def tokenizer():
    from jaxlab.models.smollm2 import load_tokenizer

    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [STEP_SEPARATOR]})  # Qwen's PRM vocab has it
    return tok


def _model(tokenizer, labels, head):
    cfg = dataclasses.replace(tiny_config(), vocab_size=len(tokenizer))
    return RewardModel(cfg, labels, head, rngs=nnx.Rngs(0))


def _fit(model, loss_fn, steps=300):
    graphdef, state = nnx.split(model)
    tx = optax.adam(2e-3)
    opt = tx.init(state)

    @jax.jit
    def step(state, opt):
        loss, grads = jax.value_and_grad(lambda s: loss_fn(nnx.merge(graphdef, s)))(state)
        updates, opt = tx.update(grads, opt, state)
        return optax.apply_updates(state, updates), opt, loss

    losses = []
    for _ in range(steps):
        state, opt, loss = step(state, opt)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    return nnx.merge(graphdef, state)


def _batch(scorer, conversations):
    rows = [scorer.encode(c) for c in conversations]
    width = -(-max(map(len, rows)) // 64) * 64
    ids = np.zeros((len(rows), width), np.int32)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return jnp.asarray(ids), jnp.asarray(mask)


def _conv(task, response):
    return [{"role": "user", "content": task}, {"role": "assistant", "content": response}]


def test_orm_with_a_trained_sequence_classifier_ranks_the_correct_answer_first(tokenizer):
    model = _model(tokenizer, 1, "linear")
    probe = SequenceRewardScorer(model, tokenizer)
    good = [_conv(_task(a, b), _solution(a, b, a + b)) for a, b in SUMS]
    bad = [_conv(_task(a, b), _solution(a, b, a + b + k)) for k in (1, 2) for a, b in SUMS]
    ids, mask = _batch(probe, good + bad)
    n = len(good)

    def bradley_terry(m):  # every correct answer above every wrong one of its task
        s = sequence_scores(m(ids, mask), mask)[:, 0]
        return -jnp.mean(jax.nn.log_sigmoid(jnp.tile(s[:n], 2) - s[n:]))

    verifier = make_verifier(
        "rm",
        ScriptedClient(responder=lambda r: ""),
        Meter(),
        reward_fn=SequenceRewardScorer(_fit(model, bradley_terry), tokenizer),
    )
    for a, b in SUMS:
        candidates = [_solution(a, b, a + b + 2), _solution(a, b, a + b), _solution(a, b, a + b + 1)]
        assert verifier.rank(_task(a, b), candidates)[0] == 1


def test_prm_with_a_trained_step_scorer_finds_the_wrong_step(tokenizer):
    model = _model(tokenizer, 2, "mlp")
    probe = StepRewardScorer(model, tokenizer)

    def steps(a, b, first, second):
        return [f"{a} + {b} = {first}.", f"So the answer is \\boxed{{{second}}}."]

    rows, labels = [], []
    for a, b in SUMS:
        s = a + b
        for st, lab in (
            (steps(a, b, s, s), (1, 1)),
            (steps(a, b, s + 1, s + 1), (0, 0)),
            (steps(a, b, s, s + 2), (1, 0)),
        ):
            rows.append(prm_messages(_task(a, b), st))
            labels.append(lab)
    ids, mask = _batch(probe, rows)
    sep = probe.separator_id
    at = np.asarray(ids) == sep
    assert at.sum(axis=1).tolist() == [2] * len(rows)  # one separator after every step
    target = np.zeros(ids.shape, np.int32)
    target[at] = np.asarray(labels).reshape(-1)

    def step_ce(m):
        logits = m(ids, mask)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(target))
        return jnp.sum(jnp.where(jnp.asarray(at), ce, 0.0)) / at.sum()

    scorer = StepRewardScorer(_fit(model, step_ce), tokenizer)
    verifier = make_verifier("prm", ScriptedClient(responder=lambda r: ""), Meter(), reward_fn=scorer)
    for a, b in SUMS:
        s = a + b
        cands = [
            "\n\n".join(steps(a, b, s + 1, s + 1)),
            "\n\n".join(steps(a, b, s, s + 2)),
            "\n\n".join(steps(a, b, s, s)),
        ]
        assert verifier.rank(_task(a, b), cands)[0] == 2
        rewards = verifier.last_step_rewards
        assert rewards[1][0] > 0.5 > rewards[1][1]  # the PRM blames the second step, not the first


def test_a_reward_model_folder_only_goes_with_the_orm_or_prm_verifier():
    from experiments.mas_prove.runner import Config
    from jaxlab.config import ConfigError

    with pytest.raises(ConfigError, match="verifier_model"):
        Config(verifier="judge_ranking", verifier_model="some/folder")
    assert Config(verifier="rm", verifier_model="some/folder").verifier_model == "some/folder"
