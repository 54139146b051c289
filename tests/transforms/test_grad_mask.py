"""Pruned units stay exactly zero through AdamW updates in the jaxlab trainer; the rest trains."""

import numpy as np
from flax import nnx
from tx_helpers import calib_batches, random_masks, tiny_model

from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.trainer import TrainConfig, fit
from jaxlab.transforms import apply_masks, mask_gradients, masked_optimizer
from jaxlab.transforms.stats import loss_gradient


def test_mask_gradients_zeroes_exactly_the_masked_entries():
    model = tiny_model("qwen2", seed=1)
    masks = random_masks(model.config, seed=2)
    grads, _ = loss_gradient(model, calib_batches(n=1))
    masked = mask_gradients(grads, masks, model.config.head_dim)
    ref = apply_masks(grads, masks, model.config.head_dim)
    zeroed = 0
    for (_, g), (_, m), (_, r) in zip(nnx.to_flat_state(grads), nnx.to_flat_state(masked), nnx.to_flat_state(ref)):
        g, m = np.asarray(g[...]), np.asarray(m[...])
        np.testing.assert_array_equal(m, np.asarray(r[...]))
        zeroed += int(np.sum((m == 0) & (g != 0)))
        assert np.all((m == g) | (m == 0))
    assert zeroed > 0


def test_pruned_weights_stay_zero_while_training():
    model = tiny_model("llama", seed=3)
    masks = random_masks(model.config, seed=4)
    hd = model.config.head_dim
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model = nnx.merge(graphdef, apply_masks(params, masks, hd), rest)
    before = {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    optim = OptimConfig(learning_rate=1e-2, warmup_steps=1, decay_steps=5, weight_decay=0.1)
    data = iter(calib_batches(n=3, seed=5))
    result = fit(
        model, data, optim, TrainConfig(steps=3, progress=False), tx=masked_optimizer(make_optimizer(optim), masks, hd)
    )
    after = {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(result.state.params)}
    changed = 0
    for path, old in before.items():
        new = after[path]
        np.testing.assert_array_equal(new[old == 0], 0.0, err_msg=str(path))  # pruned stays pruned
        changed += int(np.sum(new[old != 0] != old[old != 0]))
    assert changed > 0.9 * sum(int(np.sum(v != 0)) for v in before.values())
