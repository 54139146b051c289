"""Pallas TPU (Mosaic) grouped matmul kernels; run on CPU with ``interpret=True``.

Both kernels iterate over a work list of ``(group, row tile)`` items (see
``gmm_metadata``) fed as scalar-prefetch operands, so the BlockSpec index maps
can pick the right lhs tile and expert weight block from SMEM data.

* ``gmm``: grid ``(n tiles, items, k tiles)``.  Each item accumulates a
  ``tm x tn`` block in f32 VMEM and merges it into the output tile with a row
  mask, so a tile shared by two groups is written by two consecutive items.
  The first visit to a tile zero-fills the rows of no group (the output VMEM
  buffer is not initialised from HBM).
* ``tgmm``: grid ``(k tiles, n tiles, items)``: items are the reduction axis;
  the accumulator is reset at a group's first item and stored at its last.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from pallas_kernels.gmm_metadata import make_work_list
from pallas_kernels.tiling import Tiling, fit_tile, pad_axis
from pallas_kernels.vma import out_struct, varying_axes


def _gmm_kernel(
    gids, tids, starts, ends, nitems, lhs_ref, rhs_ref, out_ref, acc_ref, *, tm: int, num_groups: int, tiles_k: int
):
    w = pl.program_id(1)
    kk = pl.program_id(2)
    active = w < nitems[0]
    group = gids[w]

    @pl.when(kk == 0)
    def _zero():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    @pl.when(active & (group < num_groups))
    def _accumulate():
        acc_ref[...] += jnp.dot(lhs_ref[...], rhs_ref[...], preferred_element_type=jnp.float32)

    @pl.when(active & (kk == tiles_k - 1))
    def _store():
        tile = tids[w]
        first_visit = (w == 0) | (tids[jnp.maximum(w - 1, 0)] != tile)
        rows = tile * tm + jax.lax.broadcasted_iota(jnp.int32, acc_ref.shape, 0)
        in_group = (rows >= starts[group]) & (rows < ends[group]) & (group < num_groups)
        base = jnp.where(first_visit, jnp.zeros(out_ref.shape, out_ref.dtype), out_ref[...])
        out_ref[...] = jnp.where(in_group, acc_ref[...].astype(out_ref.dtype), base)


def _interpret_mode(interpret: bool, *operands: jax.Array) -> pltpu.InterpretParams | bool:
    """Inside shard_map, ``interpret=True`` uses the TPU interpreter: unlike the
    (faster) generic Pallas one it keeps the operands' varying-axis types."""
    return pltpu.InterpretParams() if interpret and varying_axes(*operands) else interpret


def gmm_tpu(
    lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, *, out_dtype: jnp.dtype, tiling: Tiling, interpret: bool
) -> jax.Array:
    """Grouped matmul [m,k] x [g,k,n] -> [m,n] as a Mosaic kernel (see module doc)."""
    m, k = lhs.shape
    num_groups, _, n = rhs.shape
    tm, m_pad = fit_tile(m, tiling.tm)
    tk, k_pad = fit_tile(k, tiling.tk)
    tn, n_pad = fit_tile(n, tiling.tn)
    lhs = pad_axis(pad_axis(lhs, 0, m_pad), 1, k_pad)
    rhs = pad_axis(pad_axis(rhs, 1, k_pad), 2, n_pad)
    work = make_work_list(group_sizes, m_pad, tm, visit_empty_groups=False, add_tail_group=True)
    tiles_k = k_pad // tk
    grid = (n_pad // tn, work.group_ids.shape[0], tiles_k)
    last_group = num_groups - 1

    def lhs_map(nn, w, kk, gids, tids, *_):
        return tids[w], kk

    def rhs_map(nn, w, kk, gids, tids, *_):
        return jnp.minimum(gids[w], last_group), kk, nn

    def out_map(nn, w, kk, gids, tids, *_):
        return tids[w], nn

    kernel = functools.partial(_gmm_kernel, tm=tm, num_groups=num_groups, tiles_k=tiles_k)
    call = pl.pallas_call(
        kernel,
        out_shape=out_struct((m_pad, n_pad), out_dtype, lhs, rhs, group_sizes),
        grid_spec=pltpu.PrefetchScalarGridSpec(
            num_scalar_prefetch=5,
            grid=grid,
            in_specs=[pl.BlockSpec((tm, tk), lhs_map), pl.BlockSpec((None, tk, tn), rhs_map)],
            out_specs=pl.BlockSpec((tm, tn), out_map),
            scratch_shapes=[pltpu.VMEM((tm, tn), jnp.float32)],
        ),
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary", "arbitrary")),
        interpret=_interpret_mode(interpret, lhs, rhs, group_sizes),
        name="gmm",
    )
    out = call(*work, lhs, rhs)
    return out[:m, :n]


def _tgmm_kernel(gids, tids, starts, ends, nitems, lhs_ref, grad_ref, out_ref, acc_ref, *, tm: int, max_items: int):
    w = pl.program_id(2)
    num_items = nitems[0]
    active = w < num_items
    group = gids[w]
    is_first = (w == 0) | (gids[jnp.maximum(w - 1, 0)] != group)
    is_last = (w == num_items - 1) | (gids[jnp.minimum(w + 1, max_items - 1)] != group)

    @pl.when(active & is_first)
    def _zero():
        acc_ref[...] = jnp.zeros_like(acc_ref)

    @pl.when(active)
    def _accumulate():
        tile = tids[w]
        rows = tile * tm + jax.lax.broadcasted_iota(jnp.int32, (tm, 1), 0)
        in_group = (rows >= starts[group]) & (rows < ends[group])
        lhs = jnp.where(in_group, lhs_ref[...], jnp.zeros((), lhs_ref.dtype))
        grad = jnp.where(in_group, grad_ref[...], jnp.zeros((), grad_ref.dtype))
        acc_ref[...] += jax.lax.dot_general(lhs, grad, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    @pl.when(active & is_last)
    def _store():
        out_ref[...] = acc_ref[...].astype(out_ref.dtype)


def tgmm_tpu(
    lhs: jax.Array, grad: jax.Array, group_sizes: jax.Array, *, out_dtype: jnp.dtype, tiling: Tiling, interpret: bool
) -> jax.Array:
    """Transposed grouped matmul [m,k] x [m,n] -> [g,k,n] as a Mosaic kernel (see module doc)."""
    m, k = lhs.shape
    n = grad.shape[1]
    num_groups = group_sizes.shape[0]
    tm, m_pad = fit_tile(m, tiling.tm)
    tk, k_pad = fit_tile(k, tiling.tk)
    tn, n_pad = fit_tile(n, tiling.tn)
    lhs = pad_axis(pad_axis(lhs, 0, m_pad), 1, k_pad)
    grad = pad_axis(pad_axis(grad, 0, m_pad), 1, n_pad)
    work = make_work_list(group_sizes, m_pad, tm, visit_empty_groups=True, add_tail_group=False)
    max_items = work.group_ids.shape[0]
    grid = (k_pad // tk, n_pad // tn, max_items)

    def lhs_map(kk, nn, w, gids, tids, *_):
        return tids[w], kk

    def grad_map(kk, nn, w, gids, tids, *_):
        return tids[w], nn

    def out_map(kk, nn, w, gids, tids, *_):
        return gids[w], kk, nn

    kernel = functools.partial(_tgmm_kernel, tm=tm, max_items=max_items)
    call = pl.pallas_call(
        kernel,
        out_shape=out_struct((num_groups, k_pad, n_pad), out_dtype, lhs, grad, group_sizes),
        grid_spec=pltpu.PrefetchScalarGridSpec(
            num_scalar_prefetch=5,
            grid=grid,
            in_specs=[pl.BlockSpec((tm, tk), lhs_map), pl.BlockSpec((tm, tn), grad_map)],
            out_specs=pl.BlockSpec((None, tk, tn), out_map),
            scratch_shapes=[pltpu.VMEM((tk, tn), jnp.float32)],
        ),
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=_interpret_mode(interpret, lhs, grad, group_sizes),
        name="tgmm",
    )
    out = call(*work, lhs, grad)
    return out[:, :k, :n]
