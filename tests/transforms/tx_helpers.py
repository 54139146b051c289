"""Shared helpers: tiny random models of each family and random (never trivial) masks."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.transforms import Masks, full_masks

FAMILIES = ("llama", "qwen2", "qwen3")


def randomize_norms(model, seed=0):
    """Give norms/biases random values so every parameter matters (init leaves norms at 1)."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if path[-1] in ("scale", "bias"):
            var.set_value(var[...] + jnp.asarray(0.2 * rng.standard_normal(var.shape), var.dtype))
    return model


def tiny_model(family="llama", seed=0, **overrides):
    cfg = tiny_config(
        family, **{"num_layers": 3, "intermediate_size": 48, "num_heads": 4, "num_kv_heads": 2, **overrides}
    )
    model = init_model(cfg, seed)
    return randomize_norms(model, seed)


def random_masks(cfg, seed=0, *, uniform=True, drop_layer=True, heads=True) -> Masks:
    """Drop ~1/3 of neurons, one query head per KV group in some layers, one KV group, one layer."""
    rng = np.random.default_rng(seed)
    m = full_masks(cfg)
    mlp = []
    n_drop = cfg.layer_intermediate[0] // 3
    for i, f in enumerate(cfg.layer_intermediate):
        keep = np.ones(f, np.float32)
        keep[rng.choice(f, n_drop + (0 if uniform else i), replace=False)] = 0
        mlp.append(jnp.asarray(keep))
    hm, kvm = list(m.heads), list(m.kv_heads)
    if heads:
        for i in range(cfg.num_layers):
            h, kv = cfg.layer_heads[i], cfg.layer_kv_heads[i]
            g = h // kv
            keep = np.ones(h, np.float32)
            if g > 1:  # one query head from every group (GQA-compatible)
                for k in range(kv):
                    keep[k * g + rng.integers(g)] = 0
            hm[i] = jnp.asarray(keep)
        kvk = np.ones(cfg.layer_kv_heads[0], np.float32)
        kvk[rng.integers(len(kvk))] = 0
        kvm[0] = jnp.asarray(kvk)
    layers = np.ones(cfg.num_layers, np.float32)
    if drop_layer:
        layers[rng.integers(1, cfg.num_layers)] = 0
    return Masks(mlp=tuple(mlp), heads=tuple(hm), kv_heads=tuple(kvm), layers=jnp.asarray(layers))


def calib_batches(vocab=256, n=2, b=2, s=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = rng.integers(0, vocab, (b, s + 1)).astype(np.int32)
        mask = np.ones((b, s), np.int32)
        mask[0, -3:] = 0  # a ragged row so token weighting matters
        out.append({"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": mask})
    return out
