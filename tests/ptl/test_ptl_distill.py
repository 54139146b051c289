"""``tune.method: distill``: the KL loss against a numpy reference, and pruned units exactly zero under it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.ptl import tune
from experiments.ptl.distill import distill_loss_sum, distill_objective
from experiments.ptl.tune import Budget, Stage, TrainerTuner, TuneConfig
from jaxlab.models import init_model, tiny_config
from jaxlab.train import data as train_data
from jaxlab.train.trainer import fit
from jaxlab.transforms import apply_masks, full_masks, prune_lowest, random_scores


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference(s, t, y, mask, temp, alpha):
    """Slow numpy: the loss sum and its gradient w.r.t. the student logits, token by token."""
    total, grad = 0.0, np.zeros_like(s)
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            if not mask[b, i]:
                continue
            p, q = _softmax(t[b, i] / temp), _softmax(s[b, i] / temp)
            kl = float(np.sum(p * (np.log(p) - np.log(q))))
            q1 = _softmax(s[b, i])
            ce = -float(np.log(q1[y[b, i]]))
            total += (1 - alpha) * temp**2 * kl + alpha * ce
            onehot = np.eye(s.shape[-1])[y[b, i]]
            grad[b, i] = (1 - alpha) * temp * (q - p) + alpha * (q1 - onehot)
    return total, grad


@pytest.mark.parametrize("temp,alpha", [(1.0, 0.0), (2.0, 0.3), (0.5, 1.0)])
def test_distill_loss_matches_numpy_forward_and_gradient(temp, alpha):
    rng = np.random.default_rng(int(temp * 10 + alpha * 100))
    s, t = rng.normal(0, 3, (2, 5, 11)), rng.normal(0, 3, (2, 5, 11))
    y = rng.integers(0, 11, (2, 5))
    mask = rng.random((2, 5)) > 0.3
    want, want_grad = _reference(s, t, y, mask, temp, alpha)

    def f(s_, t_):
        return distill_loss_sum(s_, t_, jnp.asarray(y), jnp.asarray(mask), temp, alpha)

    (got, n), (gs, gt) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
        jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
    )
    assert float(n) == mask.sum()
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gs), want_grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(gt), 0.0)  # the teacher gets no gradient


def test_distill_options_are_checked():
    model = init_model(tiny_config("llama"), 0)
    with pytest.raises(ValueError, match="distill_temperature"):
        distill_objective(model, 0.0, 0.0)
    with pytest.raises(ValueError, match="distill_alpha"):
        TuneConfig(method="distill", distill_alpha=1.5)
    with pytest.raises(ValueError, match="teacher"):
        TrainerTuner(iter([]), TuneConfig(method="distill"))


def _data():
    files, _ = train_data.split_files(train_data.stdlib_python_files(), 0.1)
    return iter(
        train_data.pretrain_dataset(files[:20], lambda t: list(t.encode()), eos_id=0, seq_len=32, batch_size=2, seed=0)
    )


def test_distill_tune_keeps_pruned_units_zero_and_uses_the_teacher(monkeypatch):
    cfg = tiny_config("llama", num_layers=2, intermediate_size=64)
    teacher = init_model(cfg, 0)
    before = jax.tree.map(np.array, nnx.state(teacher, nnx.Param))
    tcfg = TuneConfig(method="distill", steps=3, learning_rate=1e-2, weight_decay=0.1, distill_temperature=2.0)
    budget = Budget(steps=3, tokens=3 * 64, learning_rate=1e-2)
    seen = []

    def spy(*args, **kwargs):
        result = fit(*args, **kwargs)
        seen.append(result.state.opt_state.masks)
        return result

    monkeypatch.setattr(tune, "fit", spy)

    # unpruned student == teacher: the first step's KL is 0 (the teacher runs in the step, on the same batch)
    full = full_masks(cfg)
    tuner = TrainerTuner(_data(), tcfg, progress=False, teacher=teacher)
    tuner(teacher, Stage(1, 1, "ptl", full, cfg.head_dim), budget)
    first_full = tuner.last_history[0]["loss"]
    assert abs(first_full) < 1e-6 and tuner.last_history[-1]["loss"] > 10 * abs(first_full)  # then it moves away

    masks = prune_lowest(full, "mlp", random_scores(cfg.layer_intermediate, 1), 24)
    graphdef, params, rest = nnx.split(teacher, nnx.Param, ...)
    student = nnx.merge(graphdef, apply_masks(params, masks, cfg.head_dim), rest)
    tuner = TrainerTuner(_data(), tcfg, progress=False, teacher=teacher)
    tuned = tuner(student, Stage(1, 1, "ptl", masks, cfg.head_dim), budget)
    assert tuner.last_history[0]["loss"] > 100 * abs(first_full)  # the pruned student differs from its teacher
    out = nnx.state(tuned, nnx.Param)
    leaves = jax.tree.leaves(out)
    masked = jax.tree.leaves(apply_masks(out, masks, cfg.head_dim))
    for a, b in zip(leaves, masked):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # every pruned weight still exactly 0
    gate = np.asarray(out["layers"][0]["mlp"]["gate_proj"]["kernel"])
    alive = np.asarray(masks.mlp[0]) > 0
    assert (gate[:, ~alive] == 0).all() and not np.allclose(
        gate[:, alive], np.asarray(before["layers"][0]["mlp"]["gate_proj"]["kernel"])[:, alive]
    )  # the kept ones trained
    # the masks that guard against weight decay and stale moments are the stage's, inside the optimizer state
    for got, want in zip(jax.tree.leaves(seen[-1]), jax.tree.leaves(masks)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for a, b in zip(jax.tree.leaves(nnx.state(teacher, nnx.Param)), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), b)  # the teacher is frozen
