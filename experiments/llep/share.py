"""One simulated device's compiled share of an EP layer, timed on this machine.

Why: the shard_map program of D fake CPU devices runs every device's work on
the same few cores, so its wall time is no device's time.  This module takes
the library's own per-device ``body`` (the function ``routed_experts`` hands
to ``jax.shard_map``: routing, the device planner, the weight-exchange loop,
dispatch buffers, the project's gmm kernels, combine) and compiles it for one
device, with each collective replaced by what that device would receive from
it:

* ``all_gather`` returns the true gathered value (per-expert counts of every
  source, or the ``[src, dst]`` pair matrix), given as inputs;
* ``psum`` of the per-expert counts returns the true global counts; other
  ``psum`` (the weight-copy rows, the dropped count) return their input;
* ``all_to_all`` returns its input (same shape: what arrives has the size of
  what is sent); the row *contents* then differ from the real exchange, but on
  the CPU the project's kernel (``gmm`` reference) does the same work for any
  contents (every group over every buffer row), so the timing does not depend
  on them, while loop trip counts (planner, weight exchange, bounded rounds)
  come from the true gathered values;
* ``axis_index`` returns the device's index (an input, so one compile serves
  every device).

The collectives' cost is not here: the bench charges the bytes the compiled
HLO moves under a link model.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.parallel import EPConfig, ExpertPlan, pair_counts, routed_experts


class _Captured(Exception):
    """Raised by the fake ``shard_map`` to hand the body back without running the layer."""

    def __init__(self, body, args):
        super().__init__("captured")
        self.body, self.args = body, args


@contextlib.contextmanager
def _patched(module, **attrs):
    saved = {k: getattr(module, k) for k in attrs}
    for k, v in attrs.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def capture_body(ep: str, mesh, config: EPConfig, args: tuple) -> tuple[Callable, tuple]:
    """The per-device body ``routed_experts`` would shard_map, and its (global) arguments."""

    def fake_shard_map(body, **_):
        def call(*call_args):
            raise _Captured(body, call_args)

        return call

    with _patched(jax, shard_map=fake_shard_map):
        try:
            routed_experts(*args, ep=ep, mesh=mesh, config=config)
        except _Captured as got:
            return got.body, got.args
    raise RuntimeError("routed_experts did not call jax.shard_map")


def device_shards(global_args: tuple, device: int, num_devices: int) -> tuple:
    """Device ``device``'s shard of each argument: tokens and experts split on their first axis."""

    def shard(a):
        if a is None or not hasattr(a, "shape"):
            return a
        n = a.shape[0] // num_devices
        return jnp.asarray(np.asarray(a)[device * n : (device + 1) * n])

    return jax.tree.map(shard, global_args, is_leaf=lambda a: a is None)


def local_program(body: Callable, num_experts: int, num_devices: int) -> Callable:
    """``jit(f)(shards, me, counts, counts_by_source, pair_matrix)``: the body with local collectives."""
    if num_experts == num_devices:
        raise ValueError(
            "the stubbed all_gather tells counts from the pair matrix by length: "
            f"experts ({num_experts}) must differ from devices ({num_devices})"
        )

    def run(shards, me, counts, counts_by_source, pair_matrix):
        def all_gather(x, *_, **__):
            if x.shape == (num_experts,):
                return counts_by_source.astype(x.dtype)
            if x.shape == (num_devices,):
                return pair_matrix.astype(x.dtype)
            raise ValueError(f"share: no stub for an all_gather of shape {x.shape}")

        def psum(x, *_, **__):
            if getattr(x, "shape", None) == (num_experts,):
                return counts.astype(x.dtype)
            return x

        with _patched(
            jax.lax, all_gather=all_gather, psum=psum, all_to_all=lambda x, *_, **__: x, axis_index=lambda *_: me
        ):
            return body(*shards)

    return jax.jit(run)


def share_inputs(expert_ids: np.ndarray, plan: ExpertPlan, num_experts: int, num_devices: int):
    """(counts, counts_by_source, pair matrix) the device's collectives would have returned under ``plan``."""
    by_source = np.stack([np.bincount(r, minlength=num_experts) for r in expert_ids.reshape(num_devices, -1)])
    return (
        jnp.asarray(by_source.sum(0), jnp.int32),
        jnp.asarray(by_source, jnp.int32),
        jnp.asarray(pair_counts(plan, by_source), jnp.int32),
    )
