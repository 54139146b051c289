"""Standalone Pallas kernels with a pure-jnp reference and a fallback per backend."""

from pallas_kernels.gmm import IMPLS, gmm, resolve_impl, tgmm
from pallas_kernels.gmm_reference import gmm_reference, tgmm_reference
from pallas_kernels.tiling import Tiling

__all__ = ["IMPLS", "Tiling", "gmm", "gmm_reference", "resolve_impl", "tgmm", "tgmm_reference"]
