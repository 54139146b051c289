"""``model.scan_layers``: run identical decoder blocks under one ``jax.lax.scan``.

An unrolled forward gives XLA one copy of the block per layer, so compile time
grows with depth; under ``scan`` the block body is traced and compiled once. The
stacking below is still per layer, so compile time keeps growing with depth,
only more slowly: measured on this 2-core CPU (bench_scan_compile.py, hidden 256,
train-step gradient) unrolled / scanned 1.5 / 2.3 s at 2 layers, 3.0 / 3.8 s at
16, 8.0 / 4.5 s at 32, 12.3 / 9.3 s at 64. Depth-independent compiles need the
parameters stored stacked, which the per-layer consumers below would have to read. The
parameters stay the per-layer list every other part of jaxlab reads (PTL masks
and compaction, transformers export, checkpoints, logical-axis sharding): the
blocks' states are stacked along a new leading axis inside the forward pass
(one extra copy of the block weights per step, freed after it; gradients flow
back through the stack into each layer's own leaves). Only layers with the same
structure can share one traced body, so pruned (non-uniform) widths, mixed
sliding/full attention and mixed dense/MoE layers are refused by name.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlab.models.config import ModelConfig


def check_scannable(cfg: ModelConfig) -> None:
    """Raise a clear error when ``cfg.scan_layers`` is set on layers that are not all alike."""
    if not cfg.scan_layers:
        return
    reasons = []
    if not cfg.is_uniform:
        reasons.append("layer widths differ (a pruned model: intermediate_size / num_heads / num_kv_heads per layer)")
    if len(set(cfg.layer_window)) > 1:
        reasons.append(f"attention windows differ per layer {cfg.layer_window}")
    if len(set(cfg.layer_is_moe)) > 1:
        reasons.append("dense and MoE layers are mixed (moe.dense_layers)")
    if reasons:
        raise ValueError(
            "scan_layers: a scan needs identical layers, but "
            + "; ".join(reasons)
            + ". Set model.scan_layers=false for this model"
        )


def scan_blocks(
    layers: Sequence[nnx.Module], h: jax.Array, positions: jax.Array, masks: Any, remat: str = "none"
) -> tuple[jax.Array, list[jax.Array]]:
    """``h`` through every block of ``layers`` under one scan; returns ``h`` and the MoE router logits per layer.

    ``remat`` is applied to the scanned body (same policies as the unrolled path).
    """
    graphdef, first = nnx.split(layers[0])
    states = [first] + [nnx.split(layer)[1] for layer in layers[1:]]
    for i, layer in enumerate(layers[1:], 1):
        if nnx.split(layer)[0] != graphdef:
            raise ValueError(
                f"scan_layers: layer {i} is built differently from layer 0; set model.scan_layers=false for this model"
            )
    treedef = jax.tree.structure(first)
    # Plain arrays cross the scan; the Variables are rebuilt inside the body's own trace.
    stacked = [jnp.stack(xs) for xs in zip(*(jax.tree.leaves(s) for s in states))]

    def body(carry: jax.Array, leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array | None]:
        out, _, acts = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))(carry, positions, masks)
        return out, acts.get("router_logits")

    if remat != "none":
        policy = None if remat == "full" else getattr(jax.checkpoint_policies, remat)
        body = jax.checkpoint(body, policy=policy)
    h, router = jax.lax.scan(body, h, stacked)
    return h, [] if router is None else list(router)
