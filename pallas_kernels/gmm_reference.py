"""Pure-jnp grouped matmul: the ground truth every kernel path is tested against.

Rows of ``lhs`` are laid out group after group: group ``i`` owns rows
``[sum(group_sizes[:i]), sum(group_sizes[:i+1]))``.  Rows past
``sum(group_sizes)`` belong to no group; ``gmm`` writes zeros there and ``tgmm``
ignores them.  The reference loops over groups with a row mask, so it does
``num_groups`` times the work of a real kernel: it is meant to be obviously
right, not fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def group_ids_per_row(group_sizes: jax.Array, num_rows: int) -> jax.Array:
    """Group index of every row; ``len(group_sizes)`` for rows past the last group."""
    ends = jnp.cumsum(group_sizes.astype(jnp.int32))
    return jnp.searchsorted(ends, jnp.arange(num_rows, dtype=jnp.int32), side="right")


def gmm_reference(
    lhs: jax.Array,
    rhs: jax.Array,
    group_sizes: jax.Array,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """``out[r] = lhs[r] @ rhs[group(r)]``; zeros for rows in no group. Shapes [m,k],[g,k,n] -> [m,n]."""
    out_dtype = preferred_element_type or lhs.dtype
    row_group = group_ids_per_row(group_sizes, lhs.shape[0])

    def group_product(i):
        prod = jnp.dot(lhs, rhs[i], preferred_element_type=jnp.float32)
        return jnp.where((row_group == i)[:, None], prod, 0.0)

    # Start from group 0 (not from zeros) so the carry inherits the inputs'
    # shard_map varying-axis type.
    acc = jax.lax.fori_loop(1, rhs.shape[0], lambda i, acc: acc + group_product(i), group_product(0))
    return acc.astype(out_dtype)


def tgmm_reference(
    lhs: jax.Array,
    grad: jax.Array,
    group_sizes: jax.Array,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """``out[i] = lhs[rows_i].T @ grad[rows_i]``; zeros for empty groups. Shapes [m,k],[m,n] -> [g,k,n]."""
    out_dtype = preferred_element_type or lhs.dtype
    num_groups = group_sizes.shape[0]
    row_group = group_ids_per_row(group_sizes, lhs.shape[0])
    one_hot = (row_group[None, :] == jnp.arange(num_groups)[:, None]).astype(lhs.dtype)
    out = jnp.einsum("gm,mk,mn->gkn", one_hot, lhs, grad, preferred_element_type=jnp.float32)
    return out.astype(out_dtype)
