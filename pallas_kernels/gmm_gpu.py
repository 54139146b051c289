"""GPU grouped matmul: a Pallas Triton kernel for ``gmm``; ``jax.lax.ragged_dot`` otherwise.

The Triton kernel walks the same ``(group, row tile)`` work list as the TPU
kernel, one program per (item, n tile).  Triton has no scalar prefetch, so each
program reads its item from global memory and loads its tiles with ``pl.ds``.
Items sharing a row tile store disjoint row masks, so they never race; the tail
pseudo-group stores zeros for rows past ``sum(group_sizes)``.

``tgmm`` on GPU uses ``ragged_dot_general`` with the ragged dimension on the
contracted axis, which XLA:GPU lowers to a grouped GEMM.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from pallas_kernels.gmm_metadata import make_work_list
from pallas_kernels.tiling import Tiling, fit_tile, pad_axis
from pallas_kernels.vma import out_struct


def _gmm_triton_kernel(
    gids,
    tids,
    starts,
    ends,
    nitems,
    lhs_ref,
    rhs_ref,
    out_ref,
    *,
    tm: int,
    tk: int,
    tn: int,
    tiles_k: int,
    num_groups: int,
):
    w = pl.program_id(0)
    nn = pl.program_id(1)
    group = gids[w]
    tile = tids[w]
    weight_group = jnp.minimum(group, num_groups - 1)
    row0 = tile * tm

    def body(kk, acc):
        a = plgpu.load(lhs_ref.at[pl.ds(row0, tm), pl.ds(kk * tk, tk)])
        b = plgpu.load(rhs_ref.at[weight_group, pl.ds(kk * tk, tk), pl.ds(nn * tn, tn)])
        return acc + jnp.dot(a, b, preferred_element_type=jnp.float32)

    acc = jax.lax.fori_loop(0, tiles_k, body, jnp.zeros((tm, tn), jnp.float32))
    acc = jnp.where(group < num_groups, acc, 0.0)
    rows = row0 + jax.lax.broadcasted_iota(jnp.int32, (tm, tn), 0)
    mask = (rows >= starts[group]) & (rows < ends[group]) & (w < nitems[0])
    plgpu.store(out_ref.at[pl.ds(row0, tm), pl.ds(nn * tn, tn)], acc.astype(out_ref.dtype), mask=mask)


def gmm_triton(
    lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, *, out_dtype: jnp.dtype, tiling: Tiling, interpret: bool
) -> jax.Array:
    """Grouped matmul [m,k] x [g,k,n] -> [m,n] as a Pallas Triton kernel.

    Triton needs power-of-two blocks of at least 16, so every dimension is
    padded to a multiple of its (rounded-up) tile.
    """
    m, k = lhs.shape
    num_groups, _, n = rhs.shape
    tm, m_pad = _triton_tile(m, tiling.tm)
    tk, k_pad = _triton_tile(k, tiling.tk)
    tn, n_pad = _triton_tile(n, tiling.tn)
    lhs = pad_axis(pad_axis(lhs, 0, m_pad), 1, k_pad)
    rhs = pad_axis(pad_axis(rhs, 1, k_pad), 2, n_pad)
    work = make_work_list(group_sizes, m_pad, tm, visit_empty_groups=False, add_tail_group=True)
    kernel = functools.partial(_gmm_triton_kernel, tm=tm, tk=tk, tn=tn, tiles_k=k_pad // tk, num_groups=num_groups)
    call = pl.pallas_call(
        kernel,
        out_shape=out_struct((m_pad, n_pad), out_dtype, lhs, rhs, group_sizes),
        grid=(work.group_ids.shape[0], n_pad // tn),
        interpret=interpret,
        name="gmm_triton",
    )
    return call(*work, lhs, rhs)[:m, :n]


def _triton_tile(dim: int, tile: int) -> tuple[int, int]:
    tile = max(16, pl.next_power_of_2(min(tile, dim)))
    return fit_tile(-(-dim // tile) * tile, tile)


def gmm_ragged_dot(lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, *, out_dtype: jnp.dtype) -> jax.Array:
    """Grouped matmul through XLA's ``ragged_dot`` (rows past the groups come out zero)."""
    out = jax.lax.ragged_dot(lhs, rhs, group_sizes.astype(jnp.int32), preferred_element_type=jnp.float32)
    return out.astype(out_dtype)


def tgmm_ragged_dot(lhs: jax.Array, grad: jax.Array, group_sizes: jax.Array, *, out_dtype: jnp.dtype) -> jax.Array:
    """Per-group ``lhs.T @ grad`` through ``ragged_dot_general`` (ragged contracted axis)."""
    dims = jax.lax.RaggedDotDimensionNumbers(
        dot_dimension_numbers=(((0,), (0,)), ((), ())),
        lhs_ragged_dimensions=[0],
        rhs_group_dimensions=[],
    )
    out = jax.lax.ragged_dot_general(lhs, grad, group_sizes.astype(jnp.int32), dims, preferred_element_type=jnp.float32)
    return out.astype(out_dtype)
