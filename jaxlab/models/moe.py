"""Mixture-of-experts feed-forward: router, routed experts, shared expert, router losses.

Routing is softmax top-k (optionally renormalised). Expert compute never
builds a dense ``[tokens, experts]`` one-hot: token copies are sorted by expert
and run through ``pallas_kernels.gmm`` grouped matmuls inside
``jaxlab.parallel.routed_experts``, so ``moe.ep`` selects no / standard /
least-loaded expert parallelism for every family, gpt-oss's biased,
clamped-SwiGLU experts included.
"""

from __future__ import annotations

import math

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlab.models.config import ModelConfig, MoEConfig, dtype_of
from jaxlab.models.layers import Linear, _normal
from jaxlab.parallel import EPConfig, ExpertActivation, routed_experts
from jaxlab.parallel.routed_ffn import clamped_swiglu  # noqa: F401  (re-exported: gpt-oss's activation)


def route(logits: jax.Array, top_k: int, norm_topk_prob: bool) -> tuple[jax.Array, jax.Array]:
    """Softmax over experts then top-k: ``(expert_ids [T,k] int32, weights [T,k] f32)``.

    With ``norm_topk_prob`` the k weights are renormalised to sum to one, which
    equals a softmax over the k selected logits (gpt-oss's formulation).
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    weights, ids = jax.lax.top_k(probs, top_k)
    if norm_topk_prob:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    return ids.astype(jnp.int32), weights


class Router(nnx.Module):
    """Linear router ``[embed] -> [num_experts]`` logits, computed in float32."""

    def __init__(self, d_model: int, moe: MoEConfig, *, param_dtype: Any, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_normal(rngs, (d_model, moe.num_experts), 0.02, param_dtype), axes=("embed", None))
        self.bias = (
            nnx.Param(_normal(rngs, (moe.num_experts,), 0.02, param_dtype), axes=(None,)) if moe.router_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        logits = jnp.dot(x.astype(jnp.float32), self.kernel[...].astype(jnp.float32))
        if self.bias is not None:
            logits = logits + self.bias[...].astype(jnp.float32)
        return logits


class Experts(nnx.Module):
    """Stacked expert weights ``w_gate/w_up [E, d, f]``, ``w_down [E, f, d]`` (+ optional biases)."""

    def __init__(self, d_model: int, moe: MoEConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        e, f = moe.num_experts, moe.intermediate_size
        self.w_gate = nnx.Param(_normal(rngs, (e, d_model, f), 0.02, param_dtype), axes=("expert", "embed", "mlp"))
        self.w_up = nnx.Param(_normal(rngs, (e, d_model, f), 0.02, param_dtype), axes=("expert", "embed", "mlp"))
        self.w_down = nnx.Param(_normal(rngs, (e, f, d_model), 0.02, param_dtype), axes=("expert", "mlp", "embed"))
        if moe.expert_bias:
            self.b_gate = nnx.Param(_normal(rngs, (e, f), 0.02, param_dtype), axes=("expert", "mlp"))
            self.b_up = nnx.Param(_normal(rngs, (e, f), 0.02, param_dtype), axes=("expert", "mlp"))
            self.b_down = nnx.Param(_normal(rngs, (e, d_model), 0.02, param_dtype), axes=("expert", "embed"))
        else:
            self.b_gate = self.b_up = self.b_down = None
        self.moe = moe
        self.dtype = dtype

    def __call__(self, x: jax.Array, expert_ids: jax.Array, weights: jax.Array) -> jax.Array:
        """``y[t] = sum_j weights[t, j] * FFN_{expert_ids[t, j]}(x[t])`` for ``x [T, d]``, under ``moe.ep``."""
        moe = self.moe
        w = [p[...].astype(self.dtype) for p in (self.w_gate, self.w_up, self.w_down)]
        biases = {
            name: None if p is None else p[...].astype(self.dtype)
            for name, p in (("b_gate", self.b_gate), ("b_up", self.b_up), ("b_down", self.b_down))
        }
        x, weights = x.astype(self.dtype), weights.astype(self.dtype)
        ep_config = EPConfig(
            capacity_factor=moe.ep_capacity_factor,
            max_extra_experts=moe.ep_max_extra_experts,
            min_chunk=moe.ep_min_chunk,
            planner=moe.ep_planner,
            alpha=moe.ep_alpha,
            fallback_lambda=moe.ep_fallback_lambda,
            gmm_impl=moe.gmm_impl,
        )
        kw = dict(
            config=ep_config, activation=ExpertActivation(moe.activation, moe.swiglu_alpha, moe.swiglu_limit), **biases
        )
        if moe.ep == "none":
            return routed_experts(x, expert_ids, weights, *w, ep="none", **kw)[0]
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty or "expert" not in mesh.shape:
            raise ValueError(
                f"moe.ep={moe.ep!r} needs a mesh with an 'expert' axis: run the model inside "
                "`with jax.set_mesh(mesh):` (jaxlab.sharding.make_mesh), or set moe.ep='none'"
            )
        # routed_experts splits tokens evenly over the expert axis and the data replicas (batch_axes)
        split = math.prod(mesh.shape[a] for a in ("expert", *ep_config.batch_axes) if a in mesh.shape)
        pad = -x.shape[0] % split
        if pad:  # padded rows go to expert 0 with weight 0 and are cut off again
            x = jnp.pad(x, ((0, pad), (0, 0)))
            expert_ids = jnp.pad(expert_ids, ((0, pad), (0, 0)))
            weights = jnp.pad(weights, ((0, pad), (0, 0)))
        y, _ = routed_experts(x, expert_ids, weights, *w, ep=moe.ep, mesh=mesh, **kw)
        return y[: y.shape[0] - pad]


class SharedExpert(nnx.Module):
    """Always-on SwiGLU expert (Qwen2-MoE), optionally scaled by ``sigmoid(gate(x))`` per token."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        moe = cfg.moe
        kw = dict(dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)
        f = moe.shared_expert_intermediate_size
        self.gate_proj = Linear(cfg.hidden_size, f, ("embed", "mlp"), **kw)
        self.up_proj = Linear(cfg.hidden_size, f, ("embed", "mlp"), **kw)
        self.down_proj = Linear(f, cfg.hidden_size, ("mlp", "embed"), **kw)
        self.gate = Linear(cfg.hidden_size, 1, ("embed", None), **kw) if moe.shared_expert_gate else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
        return y if self.gate is None else jax.nn.sigmoid(self.gate(x)) * y


class MoEBlock(nnx.Module):
    """Routed experts (+ shared expert) in place of a dense MLP; returns ``(y, {"router_logits", "expert_ids"})``."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        moe = cfg.moe
        dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
        self.router = Router(cfg.hidden_size, moe, param_dtype=pdt, rngs=rngs)
        self.experts = Experts(cfg.hidden_size, moe, dtype=dt, param_dtype=pdt, rngs=rngs)
        self.shared_expert = SharedExpert(cfg, rngs=rngs) if moe.shared_expert_intermediate_size else None
        self.top_k, self.norm_topk_prob = moe.num_experts_per_tok, moe.norm_topk_prob

    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = self.router(flat)
        ids, weights = route(logits, self.top_k, self.norm_topk_prob)
        y = self.experts(flat, ids, weights)
        if self.shared_expert is not None:
            y = y + self.shared_expert(flat)
        return y.reshape(shape).astype(x.dtype), {"router_logits": logits, "expert_ids": ids}


def _valid_rows(valid: jax.Array | None, rows: int) -> jax.Array:
    return jnp.ones((rows,), jnp.float32) if valid is None else valid.reshape(-1).astype(jnp.float32)


def load_balancing_loss(router_logits: Sequence[jax.Array], top_k: int, valid: jax.Array | None = None) -> jax.Array:
    """Switch-Transformer balance loss over all MoE layers, as transformers defines it.

    ``E * sum_e f_e * P_e`` where, pooled over layers and real tokens, ``f_e`` is
    the fraction of token copies sent to expert ``e`` (sums to ``top_k``) and
    ``P_e`` the mean router probability. Its minimum ``top_k`` means even load.
    """
    if not router_logits:
        return jnp.zeros((), jnp.float32)
    num_experts = router_logits[0].shape[-1]
    counts = jnp.zeros((num_experts,), jnp.float32)
    prob_sum = jnp.zeros((num_experts,), jnp.float32)
    rows = jnp.zeros((), jnp.float32)
    for logits in router_logits:
        mask = _valid_rows(valid, logits.shape[0])
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        _, ids = jax.lax.top_k(probs, top_k)
        counts = counts.at[ids.reshape(-1)].add(jnp.repeat(mask, top_k))
        prob_sum = prob_sum + jnp.sum(probs * mask[:, None], axis=0)
        rows = rows + jnp.sum(mask)
    rows = jnp.maximum(rows, 1.0)
    return num_experts * jnp.sum((counts / rows) * (prob_sum / rows))


def router_z_loss(router_logits: Sequence[jax.Array], valid: jax.Array | None = None) -> jax.Array:
    """ST-MoE z-loss: mean over layers and real tokens of ``logsumexp(router logits)^2``."""
    if not router_logits:
        return jnp.zeros((), jnp.float32)
    total, rows = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
    for logits in router_logits:
        mask = _valid_rows(valid, logits.shape[0])
        z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
        total = total + jnp.sum(mask * z * z)
        rows = rows + jnp.sum(mask)
    return total / jnp.maximum(rows, 1.0)


def moe_aux(cfg: ModelConfig, router_logits: Sequence[jax.Array], valid: jax.Array | None = None) -> dict[str, Any]:
    """Router losses of a forward pass; ``aux_loss`` is what a trainer adds to the LM loss."""
    lb = load_balancing_loss(router_logits, cfg.moe.num_experts_per_tok, valid)
    z = router_z_loss(router_logits, valid)
    return {
        "load_balancing_loss": lb,
        "router_z_loss": z,
        "aux_loss": cfg.moe.router_aux_loss_coef * lb + cfg.moe.router_z_loss_coef * z,
        "router_logits": tuple(router_logits),
    }
