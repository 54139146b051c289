"""One package per research result; each imports jaxlab, never the reverse."""
