"""Public grouped matmul ops: backend dispatch and the ``custom_vjp`` that makes gmm trainable.

``impl`` picks the path:

* ``"auto"``: the Mosaic kernel on TPU, the Triton kernel on GPU, the jnp
  reference elsewhere (CPU).
* ``"pallas_tpu"``: the Mosaic kernel (pass ``interpret=True`` off TPU).
* ``"triton"``: the Pallas Triton kernel for gmm (tgmm uses ragged_dot_general).
* ``"ragged_dot"``: XLA's ``ragged_dot`` / ``ragged_dot_general`` (any backend).
* ``"reference"``: the pure-jnp reference.

Gradients of ``gmm``: ``d lhs = gmm(d out, rhs^T)`` and ``d rhs = tgmm(lhs, d out)``,
both on the same path as the forward pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels.gmm_gpu import gmm_ragged_dot, gmm_triton, tgmm_ragged_dot
from pallas_kernels.gmm_reference import gmm_reference, tgmm_reference
from pallas_kernels.gmm_tpu import gmm_tpu, tgmm_tpu
from pallas_kernels.tiling import Tiling, check_tiling
from pallas_kernels.vma import reduce_to_vma_of

IMPLS = ("auto", "pallas_tpu", "triton", "ragged_dot", "reference")


def resolve_impl(impl: str) -> str:
    """Map ``"auto"`` to the path for the default backend; reject unknown names."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    if backend == "tpu":
        return "pallas_tpu"
    if backend == "gpu":
        return "triton"
    return "reference"


def _check_shapes(
    name: str, lhs: jax.Array, other: jax.Array, group_sizes: jax.Array, other_name: str, other_rank: int
) -> None:
    if lhs.ndim != 2:
        raise ValueError(f"{name}: lhs must be 2-D [m, k], got shape {lhs.shape}")
    if other.ndim != other_rank:
        raise ValueError(f"{name}: {other_name} must be {other_rank}-D, got shape {other.shape}")
    if group_sizes.ndim != 1 or not jnp.issubdtype(group_sizes.dtype, jnp.integer):
        raise ValueError(f"{name}: group_sizes must be a 1-D integer array, got {group_sizes.dtype}{group_sizes.shape}")


def _gmm_forward(lhs, rhs, group_sizes, impl, tiling, interpret, out_dtype):
    if impl == "pallas_tpu":
        return gmm_tpu(lhs, rhs, group_sizes, out_dtype=out_dtype, tiling=tiling, interpret=interpret)
    if impl == "triton":
        return gmm_triton(lhs, rhs, group_sizes, out_dtype=out_dtype, tiling=tiling, interpret=interpret)
    if impl == "ragged_dot":
        return gmm_ragged_dot(lhs, rhs, group_sizes, out_dtype=out_dtype)
    return gmm_reference(lhs, rhs, group_sizes, preferred_element_type=out_dtype)


def _tgmm_forward(lhs, grad, group_sizes, impl, tiling, interpret, out_dtype):
    if impl == "pallas_tpu":
        return tgmm_tpu(lhs, grad, group_sizes, out_dtype=out_dtype, tiling=tiling, interpret=interpret)
    if impl in ("triton", "ragged_dot"):
        return tgmm_ragged_dot(lhs, grad, group_sizes, out_dtype=out_dtype)
    return tgmm_reference(lhs, grad, group_sizes, preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _gmm(lhs, rhs, group_sizes, impl, tiling, interpret, out_dtype):
    return _gmm_forward(lhs, rhs, group_sizes, impl, tiling, interpret, out_dtype)


def _gmm_fwd(lhs, rhs, group_sizes, impl, tiling, interpret, out_dtype):
    out = _gmm_forward(lhs, rhs, group_sizes, impl, tiling, interpret, out_dtype)
    return out, (lhs, rhs, group_sizes)


def _gmm_bwd(impl, tiling, interpret, out_dtype, residuals, d_out):
    lhs, rhs, group_sizes = residuals
    d_lhs = _gmm_forward(d_out, jnp.swapaxes(rhs, 1, 2), group_sizes, impl, tiling, interpret, lhs.dtype)
    d_rhs = _tgmm_forward(lhs, d_out.astype(lhs.dtype), group_sizes, impl, tiling, interpret, rhs.dtype)
    # Inside shard_map an operand replicated over an axis the tokens vary over
    # (weights vs data-sharded rows) gets the sum of the shards' gradients.
    return reduce_to_vma_of(d_lhs, lhs), reduce_to_vma_of(d_rhs, rhs), None


_gmm.defvjp(_gmm_fwd, _gmm_bwd)


def gmm(
    lhs: jax.Array,
    rhs: jax.Array,
    group_sizes: jax.Array,
    *,
    impl: str = "auto",
    tiling: Tiling | tuple[int, int, int] = Tiling(),
    interpret: bool = False,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """Grouped matmul ``[m,k] x [g,k,n] -> [m,n]``: row block i of ``lhs`` times ``rhs[i]``.

    Rows are grouped contiguously by ``group_sizes`` (``sum <= m``); rows past the
    last group are returned as zeros.  Differentiable in ``lhs`` and ``rhs``.
    """
    _check_shapes("gmm", lhs, rhs, group_sizes, "rhs", 3)
    if rhs.shape[1] != lhs.shape[1]:
        raise ValueError(f"gmm: rhs contracted dim {rhs.shape[1]} != lhs k={lhs.shape[1]}")
    if rhs.shape[0] != group_sizes.shape[0]:
        raise ValueError(f"gmm: group_sizes has {group_sizes.shape[0]} groups but rhs has {rhs.shape[0]}")
    out_dtype = jnp.dtype(preferred_element_type or lhs.dtype)
    return _gmm(lhs, rhs, group_sizes, resolve_impl(impl), check_tiling(tiling), interpret, out_dtype)


def tgmm(
    lhs: jax.Array,
    grad: jax.Array,
    group_sizes: jax.Array,
    *,
    impl: str = "auto",
    tiling: Tiling | tuple[int, int, int] = Tiling(),
    interpret: bool = False,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """Transposed grouped matmul ``[m,k] x [m,n] -> [g,k,n]``: ``lhs[rows_i].T @ grad[rows_i]``.

    This is gmm's weight gradient; empty groups give zero matrices.  Not itself
    differentiated (it is the backward pass).
    """
    _check_shapes("tgmm", lhs, grad, group_sizes, "grad", 2)
    if grad.shape[0] != lhs.shape[0]:
        raise ValueError(f"tgmm: grad has {grad.shape[0]} rows but lhs has {lhs.shape[0]}")
    out_dtype = jnp.dtype(preferred_element_type or lhs.dtype)
    return _tgmm_forward(lhs, grad, group_sizes, resolve_impl(impl), check_tiling(tiling), interpret, out_dtype)
