"""Work lists for tiled grouped matmuls.

A tiled kernel walks row tiles of height ``tm``.  A tile that straddles a group
boundary must be visited once per group it touches, so the kernel iterates over
*work items* ``(group, row_tile)`` instead of tiles.  Their number depends on
``group_sizes`` (data), but it is bounded by ``num_tiles + num_groups``, which
is the static grid size; items past the real count repeat the last real item and
are skipped by the kernels (``num_items`` tells them where to stop).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class WorkList(NamedTuple):
    """Per-item group id and row tile, group row bounds, and the real item count."""

    group_ids: jax.Array  # [max_items] int32
    tile_ids: jax.Array  # [max_items] int32
    group_starts: jax.Array  # [num_groups (+1 with tail)] int32
    group_ends: jax.Array  # [num_groups (+1 with tail)] int32
    num_items: jax.Array  # [1] int32


def make_work_list(
    group_sizes: jax.Array,
    num_rows: int,
    tile_m: int,
    *,
    visit_empty_groups: bool,
    add_tail_group: bool,
) -> WorkList:
    """Enumerate ``(group, row tile)`` pairs in row order.

    ``visit_empty_groups``: give each empty group one item (tgmm must write its
    zero gradient).  ``add_tail_group``: append a pseudo-group covering the rows
    past ``sum(group_sizes)`` so every row tile is visited (gmm must write zeros
    there).  ``num_rows`` must be a multiple of ``tile_m``.
    """
    if num_rows % tile_m:
        raise ValueError(f"num_rows={num_rows} must be a multiple of tile_m={tile_m}")
    num_tiles = num_rows // tile_m
    sizes = group_sizes.astype(jnp.int32)
    ends = jnp.minimum(jnp.cumsum(sizes), num_rows)
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
    if add_tail_group:
        starts = jnp.concatenate([starts, ends[-1:]])
        ends = jnp.concatenate([ends, jnp.full((1,), num_rows, jnp.int32)])
    sizes = ends - starts
    num_groups = starts.shape[0]

    first_tile = jnp.minimum(starts // tile_m, num_tiles - 1)
    last_tile = (ends - 1) // tile_m
    tiles_per_group = jnp.where(sizes > 0, last_tile - first_tile + 1, 0)
    if visit_empty_groups:
        tiles_per_group = jnp.maximum(tiles_per_group, 1)

    max_items = num_tiles + num_groups
    num_items = jnp.sum(tiles_per_group)
    group_ids = jnp.repeat(jnp.arange(num_groups, dtype=jnp.int32), tiles_per_group, total_repeat_length=max_items)
    item_offsets = jnp.cumsum(tiles_per_group) - tiles_per_group
    item = jnp.arange(max_items, dtype=jnp.int32)
    # Items past num_items repeat the last real item (kernels skip them).
    item = jnp.minimum(item, num_items - 1)
    group_ids = group_ids[item]
    tile_ids = first_tile[group_ids] + (item - item_offsets[group_ids])
    return WorkList(group_ids, tile_ids, starts, ends, num_items.reshape(1).astype(jnp.int32))
