"""Manual-axis typing for ``pallas_call`` outputs, so the kernels run inside ``jax.shard_map``.

With ``check_vma=True`` (the default) ``shard_map`` tracks over which manual
mesh axes each value varies, and ``pallas_call`` cannot infer that for its
outputs: every ``out_shape`` must say it.  A grouped matmul's output varies
wherever any operand does, so the out type is the union of the operands'.
Outside ``shard_map`` the union is empty and ``pallas_call`` ignores it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import ManualAxisType


def varying_axes(*operands: jax.Array) -> frozenset:
    """Manual mesh axes over which any operand varies (empty outside ``shard_map``)."""
    axes: frozenset = frozenset()
    for op in operands:
        mat = getattr(jax.typeof(op), "manual_axis_type", None)
        if mat is not None:
            axes |= mat.varying
    return axes


def out_struct(shape: tuple[int, ...], dtype: jnp.dtype, *operands: jax.Array) -> jax.ShapeDtypeStruct:
    """``ShapeDtypeStruct`` for a kernel output that varies wherever its operands do."""
    return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=ManualAxisType(varying=varying_axes(*operands)))


def reduce_to_vma_of(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """Sum a cotangent over the manual axes where it varies but its primal does not.

    E.g. expert weights replicated over ``data`` whose gradient is computed from
    ``data``-sharded tokens: the per-shard parts must be summed (``psum``), which
    is what ordinary autodiff of a replicated value does.
    """
    extra = tuple(sorted(varying_axes(cotangent) - varying_axes(primal)))
    return jax.lax.psum(cotangent, extra) if extra else cotangent
