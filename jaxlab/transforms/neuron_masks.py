"""Language-neuron sets as parameter masks: deactivation (PLND / LAPE) and the random control.

A :class:`NeuronMasks` is the per-dimension sibling of the PTL
:class:`~jaxlab.transforms.masks.Masks` (which works on whole heads): one float
vector per layer for FFN neurons ``[F]``, query dims ``[H*D]``, key and value
dims ``[KV*D]`` and attention-output dims ``[H*D]``. It walks the same parameter
paths with the same helper (:func:`~jaxlab.transforms.masks.path_names`), so it
applies to params, gradients and updates alike, inside jit.

What a zero means, per unit (kernels are ``[in, out]``):

* FFN neuron, ``style="plnd"``: its ``up_proj`` column and ``down_proj`` row (as the
  released PLND code; ``gate_proj`` untouched); ``style="lape"``: its ``gate_proj``
  column, so ``SiLU(gate) = SiLU(0) = 0`` exactly as LAPE zeroes the activation.
  Either way the neuron's output ``SiLU(gate) * up`` is 0;
* query dim ``(h, d)``: its ``q_proj`` column (and bias); key/value dim
  ``(g, d)`` of KV group ``g``: its ``k_proj``/``v_proj`` column (and bias);
  output dim ``(h, d)``: its ``o_proj`` row.

PLND's attention sets live in query space (``qk``: q/k score; ``vo``: the
attention output). Under GQA a key/value dim serves ``H / KV`` query heads; it is
in the set when *any* of them is (the released code maps index ``i`` to ``i // 4``,
a Llama-3-8B-only shortcut that does not follow the head layout).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models.config import ModelConfig
from jaxlab.transforms.masks import Masks, full_masks, path_names
from jaxlab.transforms.neuron_stats import check_model

STYLES = ("plnd", "lape")


@flax.struct.dataclass
class NeuronMasks:
    """Per-layer float vectors: ``mlp [F]``, ``q [H*D]``, ``k [KV*D]``, ``v [KV*D]``, ``o [H*D]``."""

    mlp: tuple[jax.Array, ...]
    q: tuple[jax.Array, ...]
    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    o: tuple[jax.Array, ...]


def _as_layers(sets: np.ndarray | None, cfg: ModelConfig, width: int, name: str) -> np.ndarray:
    if sets is None:
        return np.zeros((cfg.num_layers, width), bool)
    arr = np.asarray(sets)
    if arr.shape != (cfg.num_layers, width) or arr.dtype != bool:
        raise ValueError(f"{name}: expected a bool [{cfg.num_layers}, {width}] set, got {arr.dtype} {arr.shape}")
    return arr


def _kv_space(sets: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Query-space ``[L, H*D]`` -> KV-space ``[L, KV*D]``: a KV dim is in when any of its query heads' dim is."""
    h, kv, d = cfg.layer_heads[0], cfg.layer_kv_heads[0], cfg.head_dim
    return sets.reshape(cfg.num_layers, kv, h // kv, d).any(axis=2).reshape(cfg.num_layers, kv * d)


def selection_masks(
    cfg: ModelConfig, ffn: np.ndarray | None = None, qk: np.ndarray | None = None, vo: np.ndarray | None = None
) -> NeuronMasks:
    """1 on the units in the sets, 0 elsewhere (``ffn [L, F]``, ``qk``/``vo [L, H*D]`` bool; ``None`` = empty)."""
    f, a = check_model(cfg)
    ffn, qk, vo = _as_layers(ffn, cfg, f, "ffn"), _as_layers(qk, cfg, a, "qk"), _as_layers(vo, cfg, a, "vo")
    k, v = _kv_space(qk, cfg), _kv_space(vo, cfg)
    vec = lambda arr: tuple(jnp.asarray(row, jnp.float32) for row in arr)  # noqa: E731
    return NeuronMasks(mlp=vec(ffn), q=vec(qk), k=vec(k), v=vec(v), o=vec(vo))


def deactivation_masks(
    cfg: ModelConfig, ffn: np.ndarray | None = None, qk: np.ndarray | None = None, vo: np.ndarray | None = None
) -> NeuronMasks:
    """Keep (1) everything except the units in the sets (the complement of :func:`selection_masks`)."""
    sel = selection_masks(cfg, ffn, qk, vo)
    return jax.tree.map(lambda m: 1.0 - m, sel)


def _multiplier(path: tuple, m: NeuronMasks, style: str) -> jax.Array | None:
    """The vector broadcasting against the leaf at ``path`` (``None`` = the leaf is not a unit's row/column)."""
    if len(path) < 4 or path[0] != "layers":
        return None
    i, module, proj, kind = path[1], path[2], path[3], path[-1]
    column = lambda vec: vec[None, :] if kind == "kernel" else vec  # noqa: E731
    if module == "mlp":
        if proj == ("gate_proj" if style == "lape" else "up_proj"):
            return column(m.mlp[i])
        if proj == "down_proj" and kind == "kernel" and style != "lape":
            return m.mlp[i][:, None]
        return None
    if module != "attn":
        return None
    if proj in ("q_proj", "k_proj", "v_proj"):
        return column({"q_proj": m.q, "k_proj": m.k, "v_proj": m.v}[proj][i])
    if proj == "o_proj" and kind == "kernel":
        return m.o[i][:, None]
    return None


def map_neuron_masked(tree: Any, masks: NeuronMasks, fn, style: str = "plnd", default=None) -> Any:
    """``fn(leaf, multiplier)`` on every leaf with a unit multiplier; ``default(leaf)`` (or identity) elsewhere."""
    if style not in STYLES:
        raise ValueError(f"style: expected one of {list(STYLES)}, got {style!r}")

    def visit(keypath, leaf):
        if leaf is None:
            return leaf
        mult = _multiplier(path_names(keypath), masks, style)
        if mult is None:
            return leaf if default is None else default(leaf)
        return fn(leaf, mult)

    return jax.tree_util.tree_map_with_path(visit, tree)


def apply_neuron_masks(tree: Any, masks: NeuronMasks, style: str = "plnd") -> Any:
    """Zero the deactivated units of a params pytree (``masks`` from :func:`deactivation_masks`); pure, jit-able."""
    return map_neuron_masked(tree, masks, lambda leaf, m: leaf * m.astype(leaf.dtype), style)


def to_ptl_masks(cfg: ModelConfig, ffn: np.ndarray) -> Masks:
    """An FFN set as PTL :class:`Masks` (set neurons pruned), for ``apply_masks`` / ``masked_optimizer`` / compaction."""
    f, _ = check_model(cfg)
    ffn = _as_layers(ffn, cfg, f, "ffn")
    return full_masks(cfg).replace(mlp=tuple(jnp.asarray(~row, jnp.float32) for row in ffn))


def random_control(sets: np.ndarray, seed: int = 0, exclude: np.ndarray | None = None) -> np.ndarray:
    """A random set with the same count per layer as ``sets [L, W]``, drawn from that layer's units.

    ``exclude`` (bool ``[L, W]``, e.g. the set itself) removes units from the pool;
    a layer whose pool is smaller than its count raises. Seeded: the same
    ``seed`` gives the same set.
    """
    sets = np.asarray(sets, bool)
    if sets.ndim != 2:
        raise ValueError(f"sets: expected a bool [L, W] set, got shape {sets.shape}")
    pool = np.ones_like(sets) if exclude is None else ~np.asarray(exclude, bool)
    if pool.shape != sets.shape:
        raise ValueError(f"exclude: expected shape {sets.shape}, got {pool.shape}")
    rng = np.random.default_rng(seed)
    out = np.zeros_like(sets)
    for layer, (row, free) in enumerate(zip(sets, pool)):
        n, candidates = int(row.sum()), np.flatnonzero(free)
        if n > len(candidates):
            raise ValueError(f"sets[{layer}]: {n} units asked for, only {len(candidates)} left after exclude")
        out[layer, rng.choice(candidates, n, replace=False)] = True
    return out
