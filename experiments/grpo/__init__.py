"""GRPO post-training on the jaxlab core: advantages, the clipped surrogate loss and its variants."""
