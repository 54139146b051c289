"""Loss masking, optimizer schedule, exact gradient accumulation, dtypes, sharded steps."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.train.loss import masked_cross_entropy, mean_loss
from jaxlab.train.optim import OptimConfig, make_optimizer, make_schedule
from jaxlab.train.step import TrainState, evaluate, make_train_step, split_model
from jaxlab.train.trainer import TrainConfig, fit


def _batch(rng, b=4, s=16, vocab=256, ragged_mask=True):
    ids = rng.integers(1, vocab, size=(b, s + 1)).astype(np.int32)
    mask = np.ones((b, s), np.int32)
    if ragged_mask:  # different token counts per row, like SFT
        for i in range(b):
            mask[i, : rng.integers(1, s - 2)] = 0
    return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": mask}


def test_masked_loss_matches_slow_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32) * 3
    targets = rng.integers(0, 11, size=(3, 7))
    mask = rng.integers(0, 2, size=(3, 7))
    logits[0, 0] = np.nan  # masked-out garbage must not leak into the loss
    mask[0, 0] = 0
    total, count = 0.0, 0
    for b in range(3):
        for t in range(7):
            if mask[b, t]:
                row = logits[b, t].astype(np.float64)
                logp = row - (row.max() + math.log(np.exp(row - row.max()).sum()))
                total -= logp[targets[b, t]]
                count += 1
    loss_sum, n = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    assert int(n) == count
    np.testing.assert_allclose(float(loss_sum), total, rtol=1e-5)
    np.testing.assert_allclose(float(mean_loss(loss_sum, n)), total / count, rtol=1e-5)
    # bf16 logits are upcast: same result as casting by hand first
    bf = jnp.asarray(np.nan_to_num(logits), jnp.bfloat16)
    ref, _ = masked_cross_entropy(bf.astype(jnp.float32), jnp.asarray(targets), jnp.asarray(mask))
    got, _ = masked_cross_entropy(bf, jnp.asarray(targets), jnp.asarray(mask))
    assert float(got) == float(ref)


def test_schedule_warmup_then_cosine_to_floor():
    cfg = OptimConfig(learning_rate=1e-3, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1)
    lr_of_update = lambda k: float(make_schedule(cfg)(k - 1))  # optax passes the 0-based count
    np.testing.assert_allclose(lr_of_update(1), 1e-4, rtol=1e-6)  # no update is wasted at lr 0
    np.testing.assert_allclose(lr_of_update(5), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(lr_of_update(10), 1e-3, rtol=1e-6)
    # halfway through the cosine: (peak + floor) / 2
    np.testing.assert_allclose(lr_of_update(60), (1e-3 + 1e-4) / 2, rtol=1e-5)
    np.testing.assert_allclose(lr_of_update(110), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(lr_of_update(500), 1e-4, rtol=1e-6)
    lrs = [lr_of_update(k) for k in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # the optimizer really applies it: first AdamW update of a unit gradient moves by ~lr(1)
    tx = make_optimizer(dataclasses.replace(cfg, weight_decay=0.0, grad_clip_norm=0.0))
    p = {"w": jnp.zeros((2, 2))}
    upd, _ = tx.update({"w": jnp.ones((2, 2))}, tx.init(p), p)
    np.testing.assert_allclose(np.asarray(upd["w"]), -1e-4, rtol=1e-4)


def test_optim_config_errors_name_the_field():
    with pytest.raises(ValueError, match="decay_steps"):
        OptimConfig(warmup_steps=10, decay_steps=5)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        OptimConfig(grad_accum_steps=0)


def test_weight_decay_skips_vectors_and_clipping_bounds_the_update():
    params = {"w": jnp.ones((3, 3)), "scale": jnp.ones((3,))}
    cfg = OptimConfig(learning_rate=0.1, warmup_steps=1, decay_steps=10, weight_decay=0.5, grad_clip_norm=1.0)
    tx = make_optimizer(cfg)
    state = tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    upd, state = tx.update(zero, state, params)
    np.testing.assert_allclose(upd["w"], -0.1 * 0.5 * np.ones((3, 3)), rtol=1e-6)
    np.testing.assert_array_equal(upd["scale"], np.zeros(3))
    # a huge gradient is clipped to global norm 1 before Adam
    clip = optax.clip_by_global_norm(1.0)
    g = {"w": jnp.full((3, 3), 1e6), "scale": jnp.full((3,), 1e6)}
    clipped, _ = clip.update(g, clip.init(params))
    np.testing.assert_allclose(float(optax.tree.norm(clipped)), 1.0, rtol=1e-5)


def test_grad_accumulation_equals_big_batch(accum=4):
    model = init_model(tiny_config("llama", num_layers=1), seed=1)
    graphdef, params, rest = split_model(model)
    batch = {k: jnp.asarray(v) for k, v in _batch(np.random.default_rng(0), b=8).items()}
    tx = optax.sgd(1.0)  # params move by exactly -grad: compares gradients, not Adam's sign
    state = TrainState(params, tx.init(params))
    big, m_big = make_train_step(graphdef, tx, 1)(state, rest, batch)
    acc, m_acc = make_train_step(graphdef, tx, accum)(state, rest, batch)
    np.testing.assert_allclose(float(m_acc["loss"]), float(m_big["loss"]), rtol=1e-6)
    assert float(m_acc["tokens"]) == float(m_big["tokens"]) == float(batch["loss_mask"].sum())
    for a, b in zip(jax.tree.leaves(acc.params), jax.tree.leaves(big.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="not divisible by grad_accum_steps"):
        make_train_step(graphdef, tx, 3)(state, rest, batch)


def test_bf16_params_and_compute_train():
    cfg = tiny_config("llama", num_layers=1, dtype="bfloat16", param_dtype="bfloat16")
    graphdef, params, rest = split_model(init_model(cfg))
    tx = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0, decay_steps=10))
    step = make_train_step(graphdef, tx, 1)
    state = TrainState(params, tx.init(params))
    batch = {k: jnp.asarray(v) for k, v in _batch(np.random.default_rng(1)).items()}
    losses = []
    for _ in range(3):
        state, m = step(state, rest, batch)
        losses.append(float(m["loss"]))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.params))
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_perplexity_is_exp_of_token_weighted_loss():
    model = init_model(tiny_config("llama", num_layers=1))
    rng = np.random.default_rng(2)
    batches = [_batch(rng), _batch(rng)]
    out = evaluate(model, batches)
    graphdef, params, rest = split_model(model)
    forward = jax.jit(lambda p, ids: nnx.merge(graphdef, p, rest)(ids))
    logits = [forward(params, jnp.asarray(b["input_ids"])) for b in batches]
    sums = [
        masked_cross_entropy(l, jnp.asarray(b["targets"]), jnp.asarray(b["loss_mask"])) for l, b in zip(logits, batches)
    ]
    loss = sum(float(s) for s, _ in sums) / sum(float(n) for _, n in sums)
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(out["perplexity"], math.exp(loss), rtol=1e-5)


class _ListData:
    """A tiny stateful iterator with grain's get_state/set_state contract."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def __next__(self):
        self.i += 1
        return self.batches[self.i - 1]

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def test_sharded_fit_matches_single_device():
    from jaxlab.sharding import MeshConfig, make_mesh

    rng = np.random.default_rng(3)
    batches = [_batch(rng, b=8) for _ in range(3)]
    ocfg = OptimConfig(learning_rate=1e-2, warmup_steps=1, decay_steps=10, grad_accum_steps=2)
    tcfg = TrainConfig(steps=2, progress=False)
    single = fit(init_model(tiny_config("llama", num_layers=1)), _ListData(batches), ocfg, tcfg)
    mesh = make_mesh(MeshConfig(data=1, fsdp=2, tensor=2), devices=jax.devices()[:4])
    sharded = fit(init_model(tiny_config("llama", num_layers=1)), _ListData(batches), ocfg, tcfg, mesh=mesh)
    emb = sharded.state.params["embed"]["embedding"][...]
    assert len(emb.sharding.device_set) > 1
    np.testing.assert_allclose([h["loss"] for h in sharded.history], [h["loss"] for h in single.history], rtol=1e-5)
