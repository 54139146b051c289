"""Meshes, logical-axis rules and placement.

Parameters carry logical axis names (``embed``, ``mlp``, ``heads`` ...); one
rules table maps each name to a mesh axis (or to several, or to none). The
same model code then runs on one device, on 8 fake CPU devices or on a pod:
only the mesh changes. A dimension that a mesh axis does not divide is left
replicated rather than failing, so tiny test models shard on any mesh.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor", "expert")

#: logical axis -> mesh axis (str), several mesh axes (tuple) or None (replicated).
DEFAULT_RULES: dict[str, Any] = {
    "batch": ("data", "fsdp", "expert"),
    "seq": None,
    "embed": "fsdp",
    "vocab": "tensor",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "expert": "expert",
    "layers": None,
}


@dataclass(frozen=True)
class MeshConfig:
    """Mesh shape; ``-1`` in one axis takes all remaining devices."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    expert: int = 1
    rules: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = [self.data, self.fsdp, self.tensor, self.expert]
        if sum(s == -1 for s in sizes) > 1:
            raise ValueError("mesh: at most one axis may be -1")
        for name, s in zip(MESH_AXES, sizes):
            if s == 0 or s < -1:
                raise ValueError(f"mesh.{name}: expected a positive size or -1, got {s}")
        unknown = set(self.rules) - set(DEFAULT_RULES)
        if unknown:
            raise ValueError(f"mesh.rules: unknown logical axis {sorted(unknown)[0]!r}; known: {sorted(DEFAULT_RULES)}")


def make_mesh(cfg: MeshConfig | None = None, devices: list | None = None) -> Mesh:
    """Build a ``Mesh`` with axes (data, fsdp, tensor, expert)."""
    cfg = cfg or MeshConfig()
    devices = list(devices if devices is not None else jax.devices())
    sizes = [cfg.data, cfg.fsdp, cfg.tensor, cfg.expert]
    fixed = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % fixed:
            raise ValueError(f"mesh: {len(devices)} devices are not divisible by the fixed axes' product {fixed}")
        sizes[sizes.index(-1)] = len(devices) // fixed
    total = int(np.prod(sizes))
    if total > len(devices):
        raise ValueError(f"mesh: shape {dict(zip(MESH_AXES, sizes))} needs {total} devices, have {len(devices)}")
    return Mesh(np.array(devices[:total]).reshape(sizes), MESH_AXES)


def rules_for(cfg: MeshConfig | None) -> dict[str, Any]:
    return {**DEFAULT_RULES, **(cfg.rules if cfg else {})}


def logical_to_spec(
    axes: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh, rules: Mapping[str, Any] | None = None
) -> P:
    """PartitionSpec for a value with logical ``axes``; undivisible dims stay replicated."""
    rules = DEFAULT_RULES if rules is None else rules
    used: set[str] = set()
    spec = []
    for name, dim in zip(axes, shape):
        target = rules.get(name) if name is not None else None
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        targets = tuple(t for t in targets if t in mesh.shape and mesh.shape[t] > 1 and t not in used)
        size = int(np.prod([mesh.shape[t] for t in targets])) if targets else 1
        if not targets or dim % size:
            spec.append(None)
            continue
        used.update(targets)
        spec.append(targets[0] if len(targets) == 1 else targets)
    return P(*spec)


def state_shardings(state: Any, mesh: Mesh, rules: Mapping[str, Any] | None = None) -> Any:
    """A pytree of ``NamedSharding`` matching an ``nnx.State`` (from each Param's ``axes``)."""
    from flax import nnx

    def one(var: Any) -> Any:
        if isinstance(var, nnx.Variable):
            shape = np.shape(var.get_raw_value())  # also for ShapeDtypeStruct values (eval_shape)
            axes = var.get_metadata().get("axes") or (None,) * len(shape)
            return var.replace(NamedSharding(mesh, logical_to_spec(axes, shape, mesh, rules)))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_state(state: Any, mesh: Mesh, rules: Mapping[str, Any] | None = None) -> Any:
    """Place every array of ``state`` on ``mesh`` per its logical axes."""
    return jax.device_put(state, state_shardings(state, mesh, rules))


def init_on_mesh(fn: Callable[..., Any], *args: Any, mesh: Mesh, rules: Mapping[str, Any] | None = None) -> Any:
    """``jax.jit(fn)(*args)`` with every output placed on ``mesh``.

    Why: an output that does not depend on its inputs' values (``tx.init``'s
    zeros and step counter) gets no sharding from propagation and lands on one
    device, so a later restore or step mixes one-device and mesh arrays
    ("incompatible devices"). Here outputs that are ``nnx.Variable`` s follow
    their logical ``axes`` (the Adam moments inherit the params' axes) and
    every other leaf (scalars, counters) is replicated over the mesh.
    """
    abstract = jax.eval_shape(fn, *args)
    return jax.jit(fn, out_shardings=state_shardings(abstract, mesh, rules))(*args)


def batch_sharding(
    mesh: Mesh, ndim: int = 2, rules: Mapping[str, Any] | None = None, batch_size: int | None = None
) -> NamedSharding:
    """Sharding for ``[batch, ...]`` arrays: batch split over the data-parallel axes."""
    shape = (batch_size if batch_size is not None else int(np.prod(list(mesh.shape.values()))),) + (1,) * (ndim - 1)
    spec = logical_to_spec(("batch",) + (None,) * (ndim - 1), shape, mesh, rules)
    return NamedSharding(mesh, spec)


_ACTIVE = threading.local()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Inside this context, ``constrain`` pins activations to ``mesh`` (used while tracing)."""
    prev = getattr(_ACTIVE, "value", None)
    _ACTIVE.value = (mesh, dict(rules or DEFAULT_RULES))
    try:
        yield
    finally:
        _ACTIVE.value = prev


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """``with_sharding_constraint`` by logical axes; a no-op outside ``activation_sharding``."""
    active = getattr(_ACTIVE, "value", None)
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh, rules)))


def active_mesh() -> tuple[Mesh, dict[str, Any]] | None:
    """``(mesh, rules)`` of the enclosing ``activation_sharding``, or None: for kernels that must ``shard_map``."""
    return getattr(_ACTIVE, "value", None)
