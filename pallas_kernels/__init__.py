"""Standalone Pallas kernels with a pure-jnp reference and a fallback per backend."""
