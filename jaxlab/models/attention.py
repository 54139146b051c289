"""Attention kernels behind ``model.attention`` and the mask they all read.

``xla`` is the reference (einsum + float32 softmax, in ``decoder.Attention``);
the others live here:

* ``dot_product``: ``jax.nn.dot_product_attention`` with the dense mask (XLA on
  any backend; every mask the reference supports).
* ``cudnn``: ``jax.nn.dot_product_attention(implementation="cudnn")``, cuDNN
  flash attention on an NVIDIA GPU. The causal triangle and the sliding window
  are passed as structure (``is_causal``, ``local_window_size``) so cuDNN skips
  the masked tiles; padding and packed-document boundaries go in as a mask
  (cuDNN turns it into an additive bias). No attention sinks (cuDNN has none);
  needs bfloat16/float16 activations and a head dim that is a multiple of 8.
* ``splash``: Pallas TPU splash attention
  (``jax.experimental.pallas.ops.tpu.splash_attention``). Causal and sliding
  window masks are static block-sparse masks, padding and packed documents are
  splash segment ids, gpt-oss sinks are the kernel's ``sinks``. Compiled on a
  TPU, run in Pallas interpret mode on the CPU (how the tests check it), refused
  on a GPU (use ``cudnn`` there). Under a mesh it runs per shard in
  ``shard_map`` (batch over the data axes, heads over ``tensor``).

The KV-cache decode step (``DecoderLM.decode``) uses the same switch except
where a kernel cannot express the cache's mask: its causal offset is the cache
index, a traced value, while splash masks are static and cuDNN's causal mask
is aligned at slot 0. There ``splash`` decodes with the ``xla`` reference (which
also keeps sinks) and ``cudnn`` with ``jax.nn.dot_product_attention``'s XLA
implementation and the dense mask (see :func:`decode_impl`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

IMPLS = ("xla", "dot_product", "splash", "cudnn")
SPLASH_LANES = 128  # splash's kv compute block must be a multiple of the TPU lane count


@flax.struct.dataclass
class AttentionMask:
    """Which key slots each query slot may attend to, kept as structure rather than a dense tensor.

    ``q_slots [S]`` (or ``[B, S]``) / ``kv_slots [T]``: the sequence slots of queries and keys
    (a decode step's queries sit at ``index[r] + arange(S)`` of a ``T``-slot cache, ``[B, S]``: each row
    has its own write index).
    ``kv_valid [B, T]``: real (True) vs padding keys, or None when every key is
    real. ``q_segments`` / ``kv_segments [B, S|T]``: packed-document ids (0 =
    padding), or None for one document per row. ``window``: the sliding window
    of the layer reading it (``q - k < window``), None for full causal.

    Why structure: kernels that never materialise ``[B, S, T]`` (splash,
    cuDNN) need the causal/window/segment pieces, not their product.
    """

    q_slots: jax.Array
    kv_slots: jax.Array
    kv_valid: jax.Array | None = None
    q_segments: jax.Array | None = None
    kv_segments: jax.Array | None = None
    window: int | None = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def causal(cls, seq: int, valid: jax.Array | None = None, segment_ids: jax.Array | None = None) -> "AttentionMask":
        """Full-sequence self-attention: queries and keys are the same ``seq`` slots."""
        slots = jnp.arange(seq, dtype=jnp.int32)
        segments = None if segment_ids is None else segment_ids.astype(jnp.int32)
        return cls(slots, slots, valid, segments, segments)

    @classmethod
    def cache(cls, q_slots: jax.Array, valid: jax.Array) -> "AttentionMask":
        """A decode step: queries at ``q_slots [S] or [B, S]`` against every slot of a cache with validity
        ``valid[B, T]``."""
        return cls(q_slots.astype(jnp.int32), jnp.arange(valid.shape[1], dtype=jnp.int32), valid)

    def with_window(self, window: int | None) -> "AttentionMask":
        return self.replace(window=window)

    def dense(self) -> jax.Array:
        """The boolean mask ``[B or 1, S, T]``: causal, within the window, real keys, same document."""
        diff = self.q_slots[..., :, None] - self.kv_slots  # [S, T], or [B, S, T] for per-row query slots
        diff = diff if diff.ndim == 3 else diff[None]
        mask = diff >= 0
        if self.window is not None:
            mask = mask & (diff < self.window)
        if self.kv_valid is not None:
            mask = mask & self.kv_valid.astype(bool)[:, None, :]
        if self.q_segments is not None:
            same = self.q_segments[:, :, None] == self.kv_segments[:, None, :]
            mask = mask & same & (self.kv_segments != 0)[:, None, :]
        return mask


def check_support(impl: str, *, sinks: bool, dtype: str, head_dim: int) -> None:
    """Refuse, with the field named, a kernel that cannot run this model (static checks, any backend)."""
    if impl not in IMPLS:
        raise ValueError(f"attention: expected one of {list(IMPLS)}, got {impl!r}")
    if sinks and impl in ("dot_product", "cudnn"):
        raise ValueError(f"attention: {impl!r} has no attention sinks (gpt-oss); use attention='xla' or 'splash'")
    if impl == "cudnn":
        if dtype not in ("bfloat16", "float16"):
            raise ValueError(
                f"attention: 'cudnn' (cuDNN flash attention) needs dtype bfloat16 or float16 "
                f"activations, got dtype={dtype!r}; use attention='dot_product' for {dtype}"
            )
        if head_dim % 8 or head_dim > 256:
            raise ValueError(f"attention: 'cudnn' needs head_dim a multiple of 8 and <= 256, got {head_dim}")


def check_backend(impl: str, backend: str | None = None) -> None:
    """Refuse a kernel the current backend cannot run: cuDNN needs a GPU, splash is a TPU (or interpreted) kernel."""
    backend = backend or jax.default_backend()
    if impl == "cudnn" and backend != "gpu":
        raise ValueError(
            f"model.attention='cudnn' needs an NVIDIA GPU (cuDNN flash attention); this process runs "
            f"on {backend!r}: use attention='xla' or 'dot_product' here"
        )
    if impl == "splash" and backend == "gpu":
        raise ValueError("model.attention='splash' is a TPU kernel (Pallas Mosaic); on a GPU use attention='cudnn'")


def decode_impl(impl: str) -> str:
    """The kernel a KV-cache decode step runs for ``impl`` (see the module docstring for why)."""
    return {"splash": "xla", "cudnn": "dot_product"}.get(impl, impl)


def attend(
    impl: str, q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask, sinks: jax.Array | None = None
) -> jax.Array:
    """``softmax(q k^T / sqrt(D)) v`` under ``mask`` by kernel ``impl``: ``q [B,S,H,D]``, ``k, v [B,T,KV,D]``.

    Returns ``[B, S, H, D]``. ``sinks [H]`` (splash only) are extra per-head
    logits in every softmax.
    """
    if impl == "dot_product":
        return jax.nn.dot_product_attention(q, k, v, mask=mask.dense()[:, None])
    if impl == "cudnn":
        check_backend(impl)
        return fused_attention(q, k, v, mask, implementation="cudnn")
    if impl == "splash":
        check_backend(impl)
        return splash_attention(q, k, v, mask, sinks, interpret=jax.default_backend() != "tpu")
    raise ValueError(f"attention: {impl!r} is not a kernel of attend(); expected 'dot_product', 'cudnn' or 'splash'")


def fused_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask, implementation: str | None = "cudnn"
) -> jax.Array:
    """The ``cudnn`` call: causal and window as structure, padding/documents as a mask.

    ``implementation=None`` runs the very same arguments through XLA, which is
    how the CPU tests check the structure (the kernel itself needs a GPU).
    """
    if q.shape[1] != k.shape[1]:
        raise ValueError(
            f"attention: 'cudnn' self-attention needs as many queries as keys, got {q.shape[1]} "
            f"and {k.shape[1]} (decode steps use decode_impl)"
        )
    extra = None
    if mask.kv_valid is not None or mask.q_segments is not None:
        extra = mask.replace(window=None).dense()[:, None]  # causal is implied by is_causal
    window = None if mask.window is None else (mask.window - 1, 0)
    return jax.nn.dot_product_attention(
        q, k, v, mask=extra, is_causal=True, local_window_size=window, implementation=implementation
    )


def _splash_block(length: int) -> int:
    return next(b for b in (512, 256, SPLASH_LANES) if length % b == 0)


@functools.lru_cache(maxsize=64)
def _splash_kernel(length: int, heads: int, window: int | None, interpret: bool) -> Any:
    """A splash kernel for ``heads`` local query heads over ``length`` slots (built once per shape)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    shape = (length, length)
    one = sm.CausalMask(shape) if window is None else sm.LocalMask(shape, window_size=(window - 1, 0), offset=0)
    block = _splash_block(length)
    sizes = sk.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    with jax.ensure_compile_time_eval():  # concrete mask-info arrays: the cached kernel must hold no tracer
        return sk.make_splash_mha(
            sm.MultiHeadMask([one] * heads), block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret
        )


def splash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: AttentionMask,
    sinks: jax.Array | None = None,
    *,
    interpret: bool = False,
) -> jax.Array:
    """Splash attention for ``q [B,S,H,D]``, ``k, v [B,S,KV,D]`` (self-attention, GQA by the kernel).

    Padding and packed documents become segment ids (padding = 0, a segment of
    its own: real queries never see it, and every padded query still sees itself,
    so no softmax row is empty). The sequence is padded up to a multiple of 128
    (splash's smallest kv block) with more padding, then cut back.
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk

    b, s, h, d = q.shape
    if k.shape[1] != s:
        raise ValueError(
            f"attention: 'splash' self-attention needs as many queries as keys, got {s} and "
            f"{k.shape[1]} (decode steps use decode_impl)"
        )
    if mask.q_segments is not None:
        seg = mask.q_segments
        if mask.kv_valid is not None:
            seg = jnp.where(mask.kv_valid.astype(bool), seg, 0)
    elif mask.kv_valid is not None:
        seg = mask.kv_valid.astype(jnp.int32)
    else:
        seg = jnp.ones((b, s), jnp.int32)
    length = -(-s // SPLASH_LANES) * SPLASH_LANES
    pad = length - s

    def heads_first(x: jax.Array) -> jax.Array:
        return jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    qh = heads_first((q.astype(jnp.float32) / math.sqrt(d)).astype(q.dtype))
    kh, vh = heads_first(k), heads_first(v)
    seg = jnp.pad(seg.astype(jnp.int32), ((0, 0), (0, pad)))

    def run(qh, kh, vh, seg, sinks):
        kernel = _splash_kernel(length, qh.shape[1], mask.window, interpret)
        call = lambda q1, k1, v1, s1: kernel(q1, k1, v1, sk.SegmentIds(s1, s1), sinks)  # noqa: E731
        return jax.vmap(call)(qh, kh, vh, seg)

    out = _per_shard(run, qh, kh, vh, seg, sinks)
    return out.transpose(0, 2, 1, 3)[:, :s]


def _per_shard(
    run: Any, qh: jax.Array, kh: jax.Array, vh: jax.Array, seg: jax.Array, sinks: jax.Array | None
) -> jax.Array:
    """``run`` on each device's block under the active mesh (a Pallas call is not auto-partitioned).

    Batch rows split over the data axes and heads over ``tensor`` when both the
    query and the kv heads divide evenly (else heads stay whole, so every shard
    keeps the GQA grouping); no mesh: ``run`` on the whole arrays.
    """
    from jaxlab.sharding import active_mesh, logical_to_spec
    from jax.sharding import PartitionSpec as P

    active = active_mesh()
    if active is None:
        return run(qh, kh, vh, seg, sinks)
    mesh, rules = active
    batch = logical_to_spec(("batch",), qh.shape[:1], mesh, rules)[0]
    q_heads = logical_to_spec(("heads",), qh.shape[1:2], mesh, rules)[0]
    kv_heads = logical_to_spec(("kv_heads",), kh.shape[1:2], mesh, rules)[0]
    heads = q_heads if q_heads is not None and q_heads == kv_heads else None
    qkv = P(batch, heads, None, None)
    sink_spec = None if sinks is None else P(heads)
    fn = jax.shard_map(
        run, mesh=mesh, in_specs=(qkv, qkv, qkv, P(batch, None), sink_spec), out_specs=qkv, check_vma=False
    )
    return fn(qh, kh, vh, seg, sinks)


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Position of each token inside its document: ``[1,1,1,2,2,0] -> [0,1,2,0,1,0]`` (padding restarts too).

    A document starts wherever the id changes; the position is the distance to
    the latest start (a running max of start indices along the row).
    """
    seg = segment_ids.astype(jnp.int32)
    idx = jnp.broadcast_to(jnp.arange(seg.shape[1], dtype=jnp.int32), seg.shape)
    starts = jnp.concatenate([jnp.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], axis=1)
    return idx - jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)
