"""Tile-size choice and padding shared by the kernel paths."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Tiling(NamedTuple):
    """Block sizes along rows (m), the contracted dim (k) and output columns (n).

    Defaults suit TPU v4/v5 MXUs (multiples of 128); a dimension smaller than
    its tile becomes a single full-size block, so small shapes need no padding.
    """

    tm: int = 128
    tk: int = 128
    tn: int = 128


def check_tiling(tiling: Tiling) -> Tiling:
    """Validate a user-supplied tiling (ints >= 1)."""
    tiling = Tiling(*tiling)
    for name, value in zip(Tiling._fields, tiling):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"tiling.{name} must be a positive int, got {value!r}")
    return tiling


def fit_tile(dim: int, tile: int) -> tuple[int, int]:
    """Return (tile, padded_dim): one full block if ``dim <= tile``, else pad to a multiple."""
    if dim <= tile:
        return dim, dim
    return tile, -(-dim // tile) * tile


def pad_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
    """Zero-pad ``x`` along ``axis`` up to ``size`` (no-op if already that size)."""
    extra = size - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)
