"""jaxlab: a JAX/TPU-first research framework (see README.md and DESIGN.md)."""

__version__ = "0.1.0"


def __getattr__(name):  # keep `import jaxlab` light; jaxlab.generate(...) is the generator
    if name == "generate":
        from jaxlab.generate import generate

        return generate
    raise AttributeError(name)
