"""Decoder-only LM (dense Llama / Qwen2 / Qwen3; MoE Mixtral / Qwen-MoE / gpt-oss) as a Flax NNX module.

One module covers the families: Qwen2 adds q/k/v biases, Qwen3 adds a
per-head RMSNorm on q and k; MoE layers swap the MLP for ``moe.MoEBlock``;
gpt-oss adds attention sinks, an o_proj bias and alternating sliding-window
layers. Layers are a plain list so widths may differ per layer after pruning
(``scan_layers`` stacks alike layers inside the forward pass, see ``scan.py``). The KV cache is an explicit pytree that goes in and comes out,
so a decode step stays a pure function.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import math

from flax import nnx

from jaxlab.models.attention import AttentionMask, attend, check_support, decode_impl, segment_positions
from jaxlab.models.config import ModelConfig, dtype_of
from jaxlab.models.layers import Embed, Linear, RMSNorm, _normal, apply_rope, rope_inv_freq
from jaxlab.models.moe import MoEBlock, moe_aux
from jaxlab.models.scan import check_scannable, scan_blocks
from jaxlab.sharding import constrain

_NEG = float(jnp.finfo(jnp.float32).min)
ACT_AXES = ("batch", "seq", "embed")


@flax.struct.dataclass
class KVCache:
    """Per-layer keys/values ``[B, T, KV, D]``, slot validity ``[B, T]`` and each row's write index ``[B]``.

    Why one index per row: a server reuses a finished row for a new request from slot 0 while the other
    rows keep decoding at their own slots (``generate`` moves all rows together, so its indices are equal).
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    valid: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, length: int, dtype: Any | None = None) -> "KVCache":
        dtype = dtype or dtype_of(cfg.dtype)
        shapes = [(batch, length, kv, cfg.head_dim) for kv in cfg.layer_kv_heads]
        return cls(
            k=tuple(jnp.zeros(s, dtype) for s in shapes),
            v=tuple(jnp.zeros(s, dtype) for s in shapes),
            valid=jnp.zeros((batch, length), bool),
            index=jnp.zeros((batch,), jnp.int32),
        )


def yarn_inv_freq(head_dim: int, theta: float, scaling: dict[str, Any]) -> tuple[jax.Array, float]:
    """YaRN inverse frequencies and attention factor (the cos/sin scale), as transformers computes them."""
    factor = float(scaling["factor"])
    old_len = float(scaling["original_max_position_embeddings"])
    beta_fast, beta_slow = float(scaling.get("beta_fast") or 32), float(scaling.get("beta_slow") or 1)
    mscale, mscale_all = scaling.get("mscale"), scaling.get("mscale_all_dim")

    def get_mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attn = scaling.get("attention_factor")
    if attn is None:
        attn = (
            get_mscale(factor, mscale) / get_mscale(factor, mscale_all) if mscale and mscale_all else get_mscale(factor)
        )

    def corr_dim(rotations: float) -> float:
        return head_dim * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = corr_dim(beta_fast), corr_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    high = high + 0.001 if low == high else high
    ramp = jnp.clip((jnp.arange(head_dim // 2, dtype=jnp.float32) - low) / (high - low), 0, 1)
    pos = theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    extrapolate = 1 - ramp
    inv = (1.0 / (factor * pos)) * (1 - extrapolate) + (1.0 / pos) * extrapolate
    return inv, float(attn)


def rope_freqs(head_dim: int, theta: float, scaling: dict[str, Any] | None) -> tuple[jax.Array, float]:
    """Inverse frequencies and the factor rotated q/k are scaled by (1.0 except for YaRN)."""
    if (scaling or {}).get("rope_type") == "yarn":
        return yarn_inv_freq(head_dim, theta, scaling)
    return rope_inv_freq(head_dim, theta, scaling), 1.0


def write_rows(buf: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """``buf[r, index[r]:index[r] + S] = new[r]`` for every row ``r`` (``buf [B, T, ...]``, ``new [B, S, ...]``).

    A vmapped ``dynamic_update_slice`` (one scatter); with a donated cache XLA updates it in place.
    """
    zeros = (0,) * (buf.ndim - 2)
    return jax.vmap(lambda b, n, i: jax.lax.dynamic_update_slice(b, n, (i, *zeros)))(buf, new.astype(buf.dtype), index)


class Attention(nnx.Module):
    """Grouped-query attention with RoPE; softmax in float32."""

    def __init__(self, cfg: ModelConfig, num_heads: int, num_kv_heads: int, *, rngs: nnx.Rngs):
        d, hd = cfg.hidden_size, cfg.head_dim
        kw = dict(dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, hd
        self.q_proj = Linear(d, num_heads * hd, ("embed", "heads"), use_bias=cfg.attention_bias, **kw)
        self.k_proj = Linear(d, num_kv_heads * hd, ("embed", "kv_heads"), use_bias=cfg.attention_bias, **kw)
        self.v_proj = Linear(d, num_kv_heads * hd, ("embed", "kv_heads"), use_bias=cfg.attention_bias, **kw)
        self.o_proj = Linear(num_heads * hd, d, ("heads", "embed"), use_bias=cfg.attention_out_bias, **kw)
        # gpt-oss sinks: a learned per-head logit in every softmax that absorbs probability mass.
        self.sinks = (
            nnx.Param(_normal(rngs, (num_heads,), 0.02, kw["param_dtype"]), axes=("heads",))
            if cfg.attention_sinks
            else None
        )
        if cfg.qk_norm:
            self.q_norm = RMSNorm(
                hd, eps=cfg.rms_norm_eps, axes=("head_dim",), dtype=kw["dtype"], param_dtype=kw["param_dtype"]
            )
            self.k_norm = RMSNorm(
                hd, eps=cfg.rms_norm_eps, axes=("head_dim",), dtype=kw["dtype"], param_dtype=kw["param_dtype"]
            )
        else:
            self.q_norm = self.k_norm = None
        self._rope = (cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        check_support(cfg.attention, sinks=cfg.attention_sinks, dtype=cfg.dtype, head_dim=hd)
        self.impl = cfg.attention

    def project(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``q [B,S,H,D]``, ``k``/``v [B,S,KV,D]`` as the softmax sees them (q/k norm and RoPE applied)."""
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        inv_freq, rope_scale = rope_freqs(*self._rope)
        q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        if rope_scale != 1.0:
            q, k = (q * rope_scale).astype(q.dtype), (k * rope_scale).astype(k.dtype)
        return q, k, v

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        mask: AttentionMask,
        kv: tuple[jax.Array, jax.Array] | None = None,
        index: jax.Array | None = None,
        span: int | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None, jax.Array]:
        b, s, _ = x.shape
        q, k, v = self.project(x, positions)
        new_kv = None
        if kv is not None:  # row r's S new keys/values go to its slots [index[r], index[r] + S)
            k, v = write_rows(kv[0], k, index), write_rows(kv[1], v, index)
            new_kv = (k, v)
            if span is not None:  # attend over the first ``span`` slots only (every row's keys lie there)
                k, v = k[:, :span], v[:, :span]
        impl = self.impl if kv is None else decode_impl(self.impl)
        if impl != "xla":
            sinks = None if self.sinks is None else self.sinks[...].astype(jnp.float32)
            heads = attend(impl, q, k.astype(q.dtype), v.astype(q.dtype), mask, sinks)
            out = self.o_proj(heads.reshape(b, s, self.num_heads * self.head_dim).astype(x.dtype))
            return out, new_kv, heads
        groups = self.num_heads // self.num_kv_heads
        qg = q.reshape(b, s, self.num_kv_heads, groups, self.head_dim)
        scores = jnp.einsum("bskgd,btkd->bkgst", qg, k.astype(q.dtype)).astype(jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(self.head_dim))
        scores = jnp.where(mask.dense()[:, None, None, :, :], scores, _NEG)
        if self.sinks is None:
            probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        else:
            sink = self.sinks[...].astype(jnp.float32).reshape(1, self.num_kv_heads, groups, 1, 1)
            sink = jnp.broadcast_to(sink, scores.shape[:-1] + (1,))
            probs = jax.nn.softmax(jnp.concatenate([scores, sink], axis=-1), axis=-1)[..., :-1].astype(v.dtype)
        heads = jnp.einsum("bkgst,btkd->bskgd", probs, v).reshape(b, s, self.num_heads, self.head_dim)
        out = self.o_proj(heads.reshape(b, s, self.num_heads * self.head_dim).astype(x.dtype))
        return out, new_kv, heads


class MLP(nnx.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, cfg: ModelConfig, intermediate: int, *, rngs: nnx.Rngs):
        kw = dict(dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)
        self.gate_proj = Linear(cfg.hidden_size, intermediate, ("embed", "mlp"), **kw)
        self.up_proj = Linear(cfg.hidden_size, intermediate, ("embed", "mlp"), **kw)
        self.down_proj = Linear(intermediate, cfg.hidden_size, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        gate, up = self.gate_proj(x), self.up_proj(x)
        act = jax.nn.silu(gate) * up
        return self.down_proj(act), {"gate": gate, "up": up, "act": act}


class DecoderBlock(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``h + mlp(norm(h))`` (the MLP is an MoE block in MoE layers)."""

    def __init__(self, cfg: ModelConfig, layer: int, *, rngs: nnx.Rngs):
        kw = dict(eps=cfg.rms_norm_eps, dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype))
        self.attn_norm = RMSNorm(cfg.hidden_size, **kw)
        self.attn = Attention(cfg, cfg.layer_heads[layer], cfg.layer_kv_heads[layer], rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, **kw)
        self.mlp = (
            MoEBlock(cfg, rngs=rngs) if cfg.layer_is_moe[layer] else MLP(cfg, cfg.layer_intermediate[layer], rngs=rngs)
        )
        self.window = cfg.layer_window[layer]

    def __call__(self, x, positions, masks, kv=None, index=None, span=None):
        mask = masks.with_window(self.window)
        attn_out, new_kv, heads = self.attn(self.attn_norm(x), positions, mask, kv, index, span)
        h = constrain(x + attn_out, ACT_AXES)
        mlp_out, acts = self.mlp(self.mlp_norm(h))
        out = constrain(h + mlp_out, ACT_AXES)
        return out, new_kv, {"block_in": x, "block_out": out, "heads": heads, **acts}


class DecoderLM(nnx.Module):
    """Token ids in, logits out: ``model(input_ids, positions, attention_mask)``."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        check_scannable(cfg)
        self.config = cfg
        dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
        self.embed = Embed(cfg.vocab_size, cfg.hidden_size, dtype=dt, param_dtype=pdt, rngs=rngs)
        self.layers = nnx.List([DecoderBlock(cfg, i, rngs=rngs) for i in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dt, param_dtype=pdt)
        self.lm_head = (
            None
            if cfg.tie_embeddings
            else Linear(cfg.hidden_size, cfg.vocab_size, ("embed", "vocab"), dtype=dt, param_dtype=pdt, rngs=rngs)
        )

    def _logits(self, h: jax.Array) -> jax.Array:
        h = self.final_norm(h)
        logits = self.embed.attend(h) if self.lm_head is None else self.lm_head(h)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        input_ids: jax.Array,
        positions: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        segment_ids: jax.Array | None = None,
        collect: bool = False,
        return_aux: bool = False,
        logits_start: int = 0,
    ):
        """Full-sequence causal forward. ``attention_mask[B, S]`` marks real tokens (1) vs padding (0).

        ``logits_start`` (a Python int): logits only for positions ``>= logits_start``, shape
        ``[B, S - logits_start, V]``. A scorer that needs the last few positions (GRPO's completion
        log-probs) then skips the vocab projection, and the ``[B, S, V]`` float32 buffer and its
        gradient, of the prompt positions.

        ``segment_ids[B, S]`` (packed sequences: 1, 2, ... per document, 0 = padding) keeps
        documents from attending to each other; positions then restart at 0 in each document.

        With ``collect=True`` also returns per-layer intermediates (block inputs/outputs, per-head
        attention outputs, MLP gate/up/act, MoE router logits) for importance scoring. With
        ``return_aux=True`` (MoE) also returns ``moe.moe_aux``: load-balancing and router z-losses
        over real tokens, their weighted sum ``aux_loss`` and the per-layer router logits.
        Returns ``logits``, ``(logits, inter)``, ``(logits, aux)`` or ``(logits, inter, aux)``.
        """
        b, s = input_ids.shape
        if not isinstance(logits_start, int) or not 0 <= logits_start < s:
            raise ValueError(
                f"logits_start: expected a Python int in [0, {s}) for a sequence of {s}, got {logits_start!r}"
            )
        given = None if attention_mask is None else attention_mask.astype(bool)
        if segment_ids is not None:
            given = (segment_ids != 0) if given is None else given & (segment_ids != 0)
        valid = jnp.ones((b, s), bool) if given is None else given
        if positions is None:
            positions = (
                jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0) if segment_ids is None else segment_positions(segment_ids)
            )
        masks = AttentionMask.causal(s, given, segment_ids)
        h = constrain(self.embed(input_ids), ACT_AXES)
        inter, router_logits = [], []
        block = _remat(self.config.remat)
        if self.config.scan_layers and not collect:  # collect (importance scoring) keeps the per-layer loop
            h, router_logits = scan_blocks(self.layers, h, positions, masks, self.config.remat)
        for layer in [] if self.config.scan_layers and not collect else self.layers:
            h, acts = block(layer, h, positions, masks)
            if collect:
                inter.append(acts)
            if "router_logits" in acts:
                router_logits.append(acts["router_logits"])
        logits = self._logits(h[:, logits_start:] if logits_start else h)
        out = (logits, inter) if collect else (logits,)
        if return_aux:
            if self.config.moe is None:
                raise ValueError("return_aux: this model has no moe section (router losses need MoE layers)")
            out = out + (moe_aux(self.config, router_logits, valid),)
        return out if len(out) > 1 else logits

    def decode(
        self,
        input_ids: jax.Array,
        positions: jax.Array,
        cache: KVCache,
        attention_mask: jax.Array | None = None,
        *,
        last_only: bool = False,
        span: int | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Run ``input_ids[B, S]`` at each row's cache slots ``[index[r], index[r]+S)``; returns logits and the
        new cache (every index advanced by ``S``).

        ``last_only=True`` returns logits ``[B, 1, V]`` for each row's last real position only (the last 1 of
        ``attention_mask``; the last column when there is no mask or it is left-padded): a prefill samples from
        that one, and the vocab projection of the other ``S - 1`` positions (about a fifth of SmolLM2-135M's
        prefill FLOPs, and a ``[B, S, V]`` float32 buffer) would be thrown away. ``span`` (static) limits
        attention to the first ``span`` cache slots; the caller guarantees every row's new slots lie there,
        so a server's decode step pays for the longest live row, not the whole cache.
        """
        b, s = input_ids.shape
        index = jnp.broadcast_to(cache.index, (b,)).astype(jnp.int32)
        new_valid = jnp.ones((b, s), bool) if attention_mask is None else attention_mask.astype(bool)
        valid = write_rows(cache.valid, new_valid, index)
        masks = AttentionMask.cache(index[:, None] + jnp.arange(s), valid if span is None else valid[:, :span])
        h = constrain(self.embed(input_ids), ACT_AXES)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            h, (k, v), _ = layer(h, positions, masks, (cache.k[i], cache.v[i]), index, span)
            ks.append(k)
            vs.append(v)
        new_cache = KVCache(k=tuple(ks), v=tuple(vs), valid=valid, index=index + s)
        if last_only:
            last = jnp.full((b,), s - 1) if attention_mask is None else s - 1 - jnp.argmax(new_valid[:, ::-1], axis=1)
            h = jnp.take_along_axis(h, last[:, None, None].astype(jnp.int32), axis=1)
        return self._logits(h), new_cache


def _run_block(layer: DecoderBlock, h: jax.Array, positions: jax.Array, masks: Any) -> tuple[jax.Array, dict]:
    out, _, acts = layer(h, positions, masks)
    return out, acts


def _remat(policy: str) -> Any:
    """The block call, under ``nnx.remat`` with ``policy`` (a ``jax.checkpoint_policies`` name) unless ``none``.

    Why per block: activations inside a block are recomputed in the backward
    pass instead of stored, so activation memory grows with one block, not all.
    """
    if policy == "none":
        return _run_block
    named = None if policy == "full" else getattr(jax.checkpoint_policies, policy)
    return nnx.remat(_run_block, policy=named, prevent_cse=True)


def with_options(model: DecoderLM, **changes: Any) -> DecoderLM:
    """``model`` with execution-only config fields (``remat``, ``attention``, ``scan_layers``) changed in place;
    weights untouched."""
    unknown = set(changes) - {"remat", "attention", "scan_layers"}
    if unknown:
        raise ValueError(
            f"with_options: only remat/attention/scan_layers can change on a built model, got {sorted(unknown)}"
        )
    cfg = model.config.replace(**changes)
    check_support(cfg.attention, sinks=cfg.attention_sinks, dtype=cfg.dtype, head_dim=cfg.head_dim)
    check_scannable(cfg)
    model.config = cfg
    for layer in model.layers:
        layer.attn.impl = model.config.attention
    return model


def init_model(cfg: ModelConfig, seed: int = 0) -> DecoderLM:
    """A randomly initialised model (for tests and from-scratch runs)."""
    return DecoderLM(cfg, rngs=nnx.Rngs(seed))
