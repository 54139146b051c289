"""Structured prune masks over a decoder's parameter pytree.

A :class:`Masks` holds one 0/1 vector per prunable unit kind, per layer:
MLP intermediate neurons ``[F_i]``, query heads ``[H_i]``, KV groups
``[KV_i]`` and whole layers ``[L]``. Masks are float32 so they can sit in an
optimizer state and go through orbax and jit as ordinary arrays (never as
baked-in constants, so one compiled step serves every pruning stage).

:func:`apply_masks` works on *any* pytree whose leaf paths are the model's
parameter paths (``layers/<i>/mlp/down_proj/kernel`` ...): an ``nnx.State`` of
params, its gradients, optimizer updates or a pure dict. What it zeroes:

* a pruned neuron: its ``gate``/``up`` column and its ``down`` row;
* a pruned query head: its ``q`` columns (and bias) and its ``o`` rows; a pruned
  KV group also prunes all its query heads and zeroes its ``k``/``v`` columns
  (a group whose query heads are all pruned is unused: compaction drops it);
* a bypassed layer: ``o_proj`` and ``down_proj`` only, so the block returns its
  input through the residual exactly (``x + 0``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models.config import ModelConfig

UNITS = ("mlp", "heads", "kv_heads", "layers")


@flax.struct.dataclass
class Masks:
    """Keep (1) / prune (0) vectors; ``mlp[i]``, ``heads[i]``, ``kv_heads[i]`` per layer, ``layers`` ``[L]``."""

    mlp: tuple[jax.Array, ...]
    heads: tuple[jax.Array, ...]
    kv_heads: tuple[jax.Array, ...]
    layers: jax.Array

    @property
    def num_layers(self) -> int:
        return len(self.mlp)


def full_masks(cfg: ModelConfig) -> Masks:
    """All-ones masks (nothing pruned) for ``cfg``."""
    ones = lambda n: jnp.ones((n,), jnp.float32)  # noqa: E731
    return Masks(
        mlp=tuple(ones(f) for f in cfg.layer_intermediate),
        heads=tuple(ones(h) for h in cfg.layer_heads),
        kv_heads=tuple(ones(k) for k in cfg.layer_kv_heads),
        layers=ones(cfg.num_layers),
    )


def check_masks(masks: Masks, cfg: ModelConfig) -> None:
    """Raise a ``ValueError`` naming the field when ``masks`` does not fit ``cfg``."""
    want = {"mlp": cfg.layer_intermediate, "heads": cfg.layer_heads, "kv_heads": cfg.layer_kv_heads}
    for name, widths in want.items():
        got = getattr(masks, name)
        if len(got) != cfg.num_layers:
            raise ValueError(f"masks.{name}: expected {cfg.num_layers} per-layer vectors, got {len(got)}")
        for i, (m, w) in enumerate(zip(got, widths)):
            if np.shape(m) != (w,):
                raise ValueError(f"masks.{name}[{i}]: expected shape ({w},), got {np.shape(m)}")
    if np.shape(masks.layers) != (cfg.num_layers,):
        raise ValueError(f"masks.layers: expected shape ({cfg.num_layers},), got {np.shape(masks.layers)}")


def query_keep(masks: Masks, layer: int) -> jax.Array:
    """Effective query-head mask of ``layer``: a head is kept iff it and its KV group are."""
    heads, kv = masks.heads[layer], masks.kv_heads[layer]
    groups = heads.shape[0] // kv.shape[0]
    return heads * jnp.repeat(kv, groups)


def kv_keep(masks: Masks, layer: int) -> jax.Array:
    """Effective KV-group mask: a group is kept iff it is unmasked and serves a kept query head."""
    q = query_keep(masks, layer)
    kv = masks.kv_heads[layer]
    used = (q.reshape(kv.shape[0], -1).max(axis=1) > 0).astype(kv.dtype)
    return kv * used


def path_names(keypath: Sequence[Any]) -> tuple:
    """``(DictKey('layers'), DictKey(0), ..., GetAttrKey('value'))`` -> ``('layers', 0, ...)``."""
    out = []
    for k in keypath:
        name = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
        out.append(name)
    if out and out[-1] == "value":
        out.pop()
    return tuple(out)


def _multiplier(path: tuple, masks: Masks, head_dim: int) -> jax.Array | None:
    """The 0/1 array that broadcasts against the leaf at ``path``; ``None`` = untouched."""
    if len(path) < 4 or path[0] != "layers":
        return None
    i, module, proj, kind = path[1], path[2], path[3], path[-1]
    layer = masks.layers[i]
    if module == "mlp":
        m = masks.mlp[i]
        if proj in ("gate_proj", "up_proj"):
            return m[None, :] if kind == "kernel" else m
        if proj == "down_proj" and kind == "kernel":
            return m[:, None] * layer
        return None
    if module != "attn":
        return None
    q = jnp.repeat(query_keep(masks, i), head_dim)
    if proj == "q_proj":
        return q[None, :] if kind == "kernel" else q
    if proj in ("k_proj", "v_proj"):
        kv = jnp.repeat(masks.kv_heads[i], head_dim)
        return kv[None, :] if kind == "kernel" else kv
    if proj == "o_proj" and kind == "kernel":
        return q[:, None] * layer
    return None


def map_masked(tree: Any, masks: Masks, head_dim: int, fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Any:
    """Apply ``fn(leaf, multiplier)`` to every masked leaf of ``tree`` (others unchanged)."""

    def visit(keypath, leaf):
        mult = _multiplier(path_names(keypath), masks, head_dim)
        if mult is None or leaf is None:
            return leaf
        return fn(leaf, mult)

    return jax.tree_util.tree_map_with_path(visit, tree)


def apply_masks(tree: Any, masks: Masks, head_dim: int) -> Any:
    """Zero the pruned units of a params/grads/updates pytree (pure, jit-able, composable).

    ``head_dim`` is ``cfg.head_dim``. Every leaf is multiplied by a product of
    per-unit 0/1 vectors, so applying ``a`` then ``b`` equals applying
    ``combine(a, b)``, and applying the same masks twice is a no-op.
    """
    return map_masked(tree, masks, head_dim, lambda leaf, m: leaf * m.astype(leaf.dtype))


def combine(a: Masks, b: Masks) -> Masks:
    """Units pruned by either ``a`` or ``b``."""
    return jax.tree.map(lambda x, y: x * y, a, b)


# --------------------------------------------------------------------------- selection
def _lowest(scores: np.ndarray, keep: np.ndarray, n: int, where: str) -> np.ndarray:
    """New keep vector with the ``n`` lowest-scoring kept units removed (ties: lower index first)."""
    alive = np.flatnonzero(keep > 0)
    if n > len(alive):
        raise ValueError(f"{where}: asked to prune {n} units but only {len(alive)} are left")
    order = alive[np.lexsort((alive, np.asarray(scores, np.float64)[alive]))]
    out = np.array(keep, np.float32)
    out[order[:n]] = 0.0
    return out


def prune_lowest(masks: Masks, unit: str, scores: Sequence[Any] | Any, n: int) -> Masks:
    """Prune the ``n`` lowest-scoring still-kept units.

    For ``mlp``/``heads``/``kv_heads`` ``scores`` is one vector per layer and
    ``n`` units go from *every* non-bypassed layer (same width everywhere, so the
    result exports to transformers); for ``layers`` it is one ``[L]`` vector and
    ``n`` layers go in total. Already-pruned units never count toward ``n``.
    """
    if unit not in UNITS:
        raise ValueError(f"unit: expected one of {list(UNITS)}, got {unit!r}")
    if n < 0:
        raise ValueError(f"n: expected >= 0 units to prune, got {n}")
    if unit == "layers":
        return masks.replace(layers=jnp.asarray(_lowest(np.asarray(scores), np.asarray(masks.layers), n, "layers")))
    current = getattr(masks, unit)
    if len(scores) != len(current):
        raise ValueError(f"scores: expected {len(current)} per-layer vectors for {unit}, got {len(scores)}")
    new = []
    for i, (s, keep) in enumerate(zip(scores, current)):
        if np.shape(s) != np.shape(keep):
            raise ValueError(
                f"scores[{i}]: expected shape {np.shape(keep)} to match masks.{unit}[{i}], got {np.shape(s)}"
            )
        skip = float(masks.layers[i]) == 0.0
        new.append(keep if skip else jnp.asarray(_lowest(np.asarray(s), np.asarray(keep), n, f"{unit}[{i}]")))
    return masks.replace(**{unit: tuple(new)})


def kept(masks: Masks, unit: str) -> list[int] | int:
    """Units still kept: per layer for ``mlp``/``heads``/``kv_heads``, a total for ``layers``."""
    if unit == "layers":
        return int(np.sum(np.asarray(masks.layers) > 0))
    return [int(np.sum(np.asarray(m) > 0)) for m in getattr(masks, unit)]
