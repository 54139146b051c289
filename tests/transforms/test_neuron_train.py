"""Neuron-specific training through the jaxlab trainer: AdamW with weight decay moves only the selected units."""

import numpy as np
import optax
from flax import nnx
from test_neuron_masks import expected_zeroed, random_sets
from tx_helpers import calib_batches, tiny_model

from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.trainer import TrainConfig, fit
from jaxlab.transforms import mask_to_selected, neuron_optimizer, selection_masks, trainable_mask


def bits(tree):
    return {tuple(p): np.asarray(v[...]).view(np.uint32) for p, v in nnx.to_flat_state(tree)}


def train(model, tx, optim, steps=3):
    result = fit(model, iter(calib_batches(n=steps, seed=21)), optim, TrainConfig(steps=steps, progress=False), tx=tx)
    return bits(result.state.params)


def setup(family, seed):
    """A tiny model, random FFN/attention sets and their selection, its parameter bits, AdamW with decay."""
    model = tiny_model(family, seed=seed, num_layers=2)
    sets = random_sets(model.config, seed + 1)
    optim = OptimConfig(learning_rate=1e-2, warmup_steps=1, decay_steps=5, weight_decay=0.1)
    return model, sets, selection_masks(model.config, *sets), bits(nnx.state(model, nnx.Param)), optim


def test_only_selected_units_change_under_adamw_with_weight_decay():
    model, (ffn, qk, vo), select, before, optim = setup("qwen2", 20)
    cfg = model.config
    after = train(model, neuron_optimizer(make_optimizer(optim), select), optim)
    moved = 0
    for path, old in before.items():
        trainable = expected_zeroed(path, old.shape, cfg, ffn, qk, vo, "plnd")
        new = after[path]
        np.testing.assert_array_equal(new[~trainable], old[~trainable], err_msg=f"{path} frozen entries moved")
        if path[2:4] in (("mlp", "gate_proj"),) or path[0] in ("embed", "final_norm", "lm_head") or "norm" in path[2]:
            assert not trainable.any(), path
        moved += int(np.sum(new[trainable] != old[trainable]))
        assert trainable.sum() == 0 or np.mean(new[trainable] != old[trainable]) > 0.9, path
    assert moved > 0


def test_masking_gradients_alone_lets_weight_decay_move_frozen_weights():
    """Why the updates are masked too: with only the gradients masked, AdamW's decay still moves frozen matrices."""
    model, _, select, before, optim = setup("llama", 23)
    inner = make_optimizer(optim)

    def grads_only_update(updates, state, params=None):
        return inner.update(mask_to_selected(updates, select), state, params)

    after = train(model, optax.GradientTransformation(inner.init, grads_only_update), optim)
    for path in (("layers", 0, "mlp", "gate_proj", "kernel"), ("embed", "embedding")):
        assert np.mean(after[path] != before[path]) > 0.9, path


def test_trainable_mask_counts():
    model = tiny_model("qwen2", seed=25, num_layers=2)
    cfg = model.config
    ffn, qk, vo = random_sets(cfg, 26)
    params = nnx.state(model, nnx.Param)
    mask = trainable_mask(params, selection_masks(cfg, ffn, qk, vo))
    got = sum(int(np.sum(np.asarray(v[...]))) for _, v in nnx.to_flat_state(mask))
    want = sum(
        int(expected_zeroed(tuple(p), v[...].shape, cfg, ffn, qk, vo, "plnd").sum())
        for p, v in nnx.to_flat_state(params)
    )
    assert got == want > 0
