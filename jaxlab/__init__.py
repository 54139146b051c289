"""jaxlab: a JAX/TPU-first research framework (see README.md and DESIGN.md)."""
__version__ = "0.1.0"
