"""GRPO's cheaper scoring: logits over completion positions only, and the mu = 1 on-policy shortcut.

The references here are written out independently of ``experiments.grpo.loss.completion_logps``:
the full ``[B, S, V]`` logits of the model, sliced after the fact, and an explicit old-policy forward.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.grpo import learner as learner_mod
from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig, aggregate, completion_logps, per_token_objective, policy_loss
from experiments.grpo.rewards import REWARDS, RewardSpec
from experiments.grpo.rollout import RolloutConfig
from jaxlab.models import init_model
from jaxlab.models.config import tiny_config
from jaxlab.train.optim import OptimConfig

B, P, C = 4, 7, 5


def _model(seed=0):
    return init_model(tiny_config("llama", num_layers=2, intermediate_size=64), seed=seed)


def _batch(vocab, seed=0):
    """Left-padded prompts, right-padded completions of random length, random advantages."""
    rng = np.random.default_rng(seed)
    p_mask = np.zeros((B, P), np.int32)
    c_mask = np.zeros((B, C), np.int32)
    for i in range(B):
        p_mask[i, P - rng.integers(2, P + 1) :] = 1
        c_mask[i, : rng.integers(1, C + 1)] = 1
    return {
        "prompt_ids": jnp.asarray(rng.integers(1, vocab, (B, P)), jnp.int32),
        "prompt_mask": jnp.asarray(p_mask),
        "completion_ids": jnp.asarray(rng.integers(1, vocab, (B, C)), jnp.int32),
        "completion_mask": jnp.asarray(c_mask),
        "advantages": jnp.asarray(rng.normal(size=B), jnp.float32),
    }


def _full_logits_logps(model, batch, temperature=1.0):
    """Reference: logits at every position, then the completion's slice."""
    ids = jnp.concatenate([batch["prompt_ids"], batch["completion_ids"]], axis=1)
    mask = jnp.concatenate([batch["prompt_mask"], batch["completion_mask"]], axis=1)
    logits = model(ids, attention_mask=mask)
    assert logits.shape[1] == P + C
    lp = jax.nn.log_softmax(logits[:, P - 1 : P + C - 1] / temperature, axis=-1)
    return jnp.take_along_axis(lp, batch["completion_ids"][..., None], axis=-1)[..., 0]


def test_logits_start_slices_the_full_forward():
    model = _model()
    ids = jnp.asarray(np.random.default_rng(1).integers(1, model.config.vocab_size, (2, 9)), jnp.int32)
    full, part = model(ids), model(ids, logits_start=6)
    assert part.shape == (2, 3, model.config.vocab_size)
    np.testing.assert_allclose(np.asarray(part), np.asarray(full[:, 6:]), rtol=1e-5, atol=1e-5)
    for bad in (9, -1, 2.0):
        with pytest.raises(ValueError, match="logits_start"):
            model(ids, logits_start=bad)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completion_logps_equal_full_logits_logps(temperature):
    model = _model()
    batch = _batch(model.config.vocab_size)
    logps, entropy = completion_logps(
        model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"], temperature
    )
    ref = _full_logits_logps(model, batch, temperature)
    assert logps.shape == (B, C) and entropy.shape == (B, C)
    np.testing.assert_allclose(np.asarray(logps), np.asarray(ref), rtol=1e-5, atol=1e-5)


def _reference_loss(params, rest, graphdef, batch, cfg):
    model = nnx.merge(graphdef, params, rest)
    mask = batch["completion_mask"].astype(jnp.float32)
    logps = _full_logits_logps(model, batch, cfg.temperature)
    per_token, _ = per_token_objective(logps, batch["old_logps"], batch["advantages"], mask, cfg)
    return aggregate(per_token, mask, cfg)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_loss_and_grads_equal_the_full_logits_loss(loss_type):
    model = _model()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = _batch(model.config.vocab_size, seed=2)
    # old log-probs off the current ones, so some ratios leave the clip range on both sides
    shift = jax.random.normal(jax.random.key(3), (B, C)) * 0.3
    batch["old_logps"] = _full_logits_logps(model, batch) + shift
    cfg = LossConfig(loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28)
    (loss, _), grads = jax.value_and_grad(policy_loss, has_aux=True)(params, rest, graphdef, batch, cfg)
    ref_loss, ref_grads = jax.value_and_grad(_reference_loss)(params, rest, graphdef, batch, cfg)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5, abs=1e-7)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_on_policy_shortcut_equals_explicit_old_logps(loss_type):
    """mu = 1: no old_logps in the batch gives the loss and gradient of old = a separate forward's logps."""
    model = _model(seed=4)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = _batch(model.config.vocab_size, seed=5)
    cfg = LossConfig(loss_type=loss_type, max_completion_length=C)
    explicit = dict(batch, old_logps=jax.lax.stop_gradient(_full_logits_logps(model, batch)))
    grad_fn = jax.value_and_grad(partial(policy_loss, rest=rest, graphdef=graphdef, cfg=cfg), has_aux=True)
    (loss_s, stats_s), grads_s = grad_fn(params, batch=batch)
    (loss_e, _), grads_e = grad_fn(params, batch=explicit)
    assert float(loss_s) == pytest.approx(float(loss_e), rel=1e-5, abs=1e-7)
    assert float(stats_s["clip_region"]) == 0.0
    for g, r in zip(jax.tree.leaves(grads_s), jax.tree.leaves(grads_e)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads_s))


def _const_reward(prompts, completions, **_):
    return [float(len(c) % 3) for c in completions]


REWARDS["test_len_mod3"] = _const_reward


def _learner(mu):
    return GRPOLearner(
        _model(seed=6),
        decode=lambda ids: bytes(t for t in ids if 0 < t < 256).decode("latin-1"),
        eos_id=0,
        pad_id=0,
        rewards=[RewardSpec("test_len_mod3")],
        rollout=RolloutConfig(num_generations=4, max_new_tokens=6),
        loss=LossConfig(),
        optim=OptimConfig(learning_rate=1e-3, warmup_steps=0, decay_steps=100, weight_decay=0.0),
        grpo=GRPOConfig(num_iterations=mu, micro_batch=3),
    )


@pytest.mark.parametrize("mu, forwards", [(1, 0), (2, 3)])
def test_learner_runs_the_old_policy_forward_only_when_mu_above_one(monkeypatch, mu, forwards):
    """mu = 1 skips the old-policy forward; its gradient equals the one with explicit old log-probs."""
    calls, applied = [], []
    real, real_apply = learner_mod._logps, learner_mod._apply
    monkeypatch.setattr(learner_mod, "_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(learner_mod, "_apply", lambda tx, s, g, m: applied.append(g) or real_apply(tx, s, g, m))
    a = _learner(mu)
    ro = a.rollout([list(b"ab"), list(b"xyz")], jax.random.key(0))
    adv = np.asarray([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.1, -0.1], np.float32)
    a._update(ro, adv, np.arange(8))
    assert len(calls) == forwards  # 8 rows in micro-batches of 3: three old-policy forwards at mu = 2
    assert len(applied) == mu
    if mu == 1:  # the same accumulated gradient with old log-probs from an explicit forward
        b = _learner(1)
        rows = b._micro_batches(
            {
                "prompt_ids": ro.prompt_ids,
                "prompt_mask": ro.prompt_mask,
                "completion_ids": ro.completion_ids,
                "completion_mask": ro.completion_mask,
                "advantages": adv,
            }
        )
        totals = {"num_items": jnp.float32(ro.completion_mask.sum()), "num_rows": jnp.float32(8)}
        grads = None
        for mb in rows:
            mb["old_logps"] = real(b.graphdef, b.state.params, b.rest, mb, 1.0)
            _, _, g = learner_mod._grad(
                b.graphdef, b.state.params, b.rest, dict(mb, **totals), b.loss_cfg, jnp.float32(1.0)
            )
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        for x, y in zip(jax.tree.leaves(applied[0]), jax.tree.leaves(grads)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
        assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
