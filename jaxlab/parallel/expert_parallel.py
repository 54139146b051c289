"""One entry point for the routed-expert FFN under ``ep = "none" | "standard" | "llep"``.

Experts are plain SwiGLU or gpt-oss style (per-expert biases, clamped SwiGLU);
the biases travel with their expert's weights in every mode.

* ``none``: everything on the current device (``routed_ffn_reference``).
* ``standard``: ``shard_map`` over the ``expert`` mesh axis; tokens and experts
  are both split over it, device ``i`` owns experts ``[i*E/D, (i+1)*E/D)`` and
  every token copy travels to its expert's owner and back.
* ``llep``: as standard, but a least-loaded plan moves the excess of hot
  experts, and copies of their weights, to under-used devices.  The plan is
  computed on device (``device_planner``; or on the host through
  ``jax.pure_callback`` with ``planner="host"``) unless the caller passes one
  in.  Only the planned copies' weights move (``weight_exchange``).

The MoE block calls ``routed_experts(..., ep=cfg.moe.ep, mesh=mesh)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from jaxlab.parallel import dispatch
from jaxlab.parallel.bounded_exchange import exchange_bounded
from jaxlab.parallel.device_planner import capacity as plan_capacity, plan_llep_device
from pallas_kernels.gmm import resolve_impl
from jaxlab.parallel.planner import ExpertPlan, plan_llep
from jaxlab.parallel.weight_exchange import copied_experts, exchange_weight_copies
from jaxlab.parallel.routed_ffn import (
    ExpertActivation,
    ExpertBiases,
    check_routing_args,
    combine,
    expert_ffn,
    routed_ffn_reference,
)

EP_MODES = ("none", "standard", "llep")
TRANSPORTS = ("auto", "all_to_all", "bounded", "ragged")
OVERFLOW_POLICIES = ("error", "drop")
PLANNERS = ("device", "host")


@dataclasses.dataclass(frozen=True)
class EPConfig:
    """Expert-parallel knobs (static: changing one recompiles).

    transport: ``"all_to_all"`` (one static block per device pair, worst-case
      receive buffers), ``"bounded"`` (``bounded_exchange``: all_to_all rounds
      into a receive buffer sized by the plan; CPU default for LLEP with the
      device planner), ``"ragged"`` (``ragged_all_to_all``; TPU/GPU default) or
      ``"auto"``.
    capacity_factor: buffer size relative to the even share; ``None`` sizes the
      buffers for the worst case so nothing can overflow (LLEP with the device
      planner: the plan's ``capacity()``).  all_to_all: rows per (source,
      destination) pair = ``ceil(f * N / D)``; ragged/bounded: rows received per
      device = ``ceil(f * N)``, with ``N`` = local tokens * top_k.
    pair_rows: bounded transport only, rows per device pair per round
      (``None``: ``ceil(receive rows / D)``); fewer rows, more rounds.
    overflow: what happens to token copies that do not fit the buffers.  Always
      counted in ``EPStats.dropped``.  ``"drop"``: they contribute zero.
      ``"error"``: their outputs are NaN (so the loss is NaN, never silently
      wrong) and an error naming the count is logged; call ``raise_on_overflow``
      on the stats from host code to turn it into an exception.  (Raising inside
      the step itself would leave the other devices waiting in a collective.)
    max_extra_experts / min_chunk: LLEP memory cap (weight copies per device)
      and smallest token chunk worth a weight copy.
    planner: ``"device"`` (jitted, ``device_planner``; the experts then run on a
      plan-bounded ``device_planner.capacity`` rows per device) or ``"host"``
      (``planner.plan_llep`` through ``pure_callback``; worst-case buffers).
    alpha: the paper's capacity factor, per-device target ``ceil(alpha * N / D)``.
    fallback_lambda: the paper's lambda; the layer runs as plain EP when the
      standard-EP max/mean device load is below it (1.0: never).
    batch_axes: mesh axes that hold data replicas (those present in the mesh are
      used): tokens are split over them and the expert axis, each replica runs
      its own EP exchange and plan on its own tokens, the expert weights are
      replicated over them (their gradients summed over them by the transpose).
    gmm_impl / gmm_interpret: grouped-matmul path (``pallas_kernels.gmm``) and
      whether a Pallas kernel runs in interpret mode (CPU tests of TPU/GPU paths).
    """

    transport: str = "auto"
    capacity_factor: float | None = None
    pair_rows: int | None = None
    overflow: str = "error"
    max_extra_experts: int = 2
    min_chunk: int = 16
    planner: str = "device"
    alpha: float = 1.0
    fallback_lambda: float = 1.0
    gmm_impl: str = "auto"
    gmm_interpret: bool = False
    axis_name: str = "expert"
    batch_axes: tuple[str, ...] = ("data", "fsdp")

    def __post_init__(self):
        if self.transport not in TRANSPORTS:
            raise ValueError(f"EPConfig.transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"EPConfig.overflow must be one of {OVERFLOW_POLICIES}, got {self.overflow!r}")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ValueError(f"EPConfig.capacity_factor must be > 0 or None, got {self.capacity_factor}")
        if self.pair_rows is not None and self.pair_rows < 1:
            raise ValueError(f"EPConfig.pair_rows must be >= 1 or None, got {self.pair_rows}")
        if self.max_extra_experts < 0:
            raise ValueError(f"EPConfig.max_extra_experts must be >= 0, got {self.max_extra_experts}")
        if self.min_chunk < 1:
            raise ValueError(f"EPConfig.min_chunk must be >= 1, got {self.min_chunk}")
        if not isinstance(self.batch_axes, tuple) or not all(isinstance(a, str) for a in self.batch_axes):
            raise ValueError(f"EPConfig.batch_axes must be a tuple of mesh axis names, got {self.batch_axes!r}")
        if self.axis_name in self.batch_axes:
            raise ValueError(f"EPConfig.batch_axes must not contain the expert axis {self.axis_name!r}")
        if self.planner not in PLANNERS:
            raise ValueError(f"EPConfig.planner must be one of {PLANNERS}, got {self.planner!r}")
        if self.alpha < 1.0 or self.fallback_lambda < 1.0:
            raise ValueError(
                f"EPConfig.alpha and fallback_lambda must be >= 1, got {self.alpha}, {self.fallback_lambda}"
            )


class EPStats(NamedTuple):
    """dropped: token copies not processed (0 unless overflow='drop'); device_load: rows per device;
    weight_rounds: distinct experts whose weights LLEP sent this step (one all-reduce of one
    expert each, ``weight_exchange``), summed over data replicas; 0 for none/standard.
    dropped is summed over the whole mesh; device_load has one entry per (replica, device)."""

    dropped: jax.Array
    device_load: jax.Array
    weight_rounds: jax.Array


def _overflow_message(dropped: int) -> str:
    return (
        f"expert parallelism could not place {dropped} token copies: raise "
        "EPConfig.capacity_factor (None sizes buffers for the worst case) or set overflow='drop'"
    )


def _log_overflow(dropped) -> None:
    if int(dropped) > 0:
        logging.error(_overflow_message(int(dropped)))


def raise_on_overflow(stats: EPStats) -> None:
    """Host-side check after a step: raise if any token copy was not processed."""
    dropped = int(np.asarray(stats.dropped))
    if dropped > 0:
        raise RuntimeError(_overflow_message(dropped))


def _resolve_transport(transport: str, plan_bounded: bool) -> str:
    """``auto``: ragged on TPU/GPU; on the CPU bounded rounds when the plan bounds the rows."""
    if transport != "auto":
        return transport
    if jax.default_backend() in ("tpu", "gpu"):
        return "ragged"
    return "bounded" if plan_bounded else "all_to_all"


def _host_plan(counts, num_devices: int, max_extra: int, min_chunk: int):
    return plan_llep(np.asarray(counts), num_devices, max_extra, min_chunk).arrays()


def llep_plan_arrays(
    expert_ids: jax.Array, num_experts: int, num_devices: int, config: EPConfig
) -> tuple[jax.Array, ...]:
    """Compute the LLEP plan on the host from inside a traced step (``pure_callback``)."""
    counts = jnp.bincount(expert_ids.reshape(-1), length=num_experts).astype(jnp.int32)
    shapes = (jax.ShapeDtypeStruct((num_experts, num_devices), jnp.int32),) * 3 + (
        jax.ShapeDtypeStruct((num_devices, config.max_extra_experts), jnp.int32),
    )
    host = functools.partial(
        _host_plan, num_devices=num_devices, max_extra=config.max_extra_experts, min_chunk=config.min_chunk
    )
    return jax.pure_callback(host, shapes, counts)


def routed_experts(
    x: jax.Array,
    expert_ids: jax.Array,
    combine_weights: jax.Array,
    w_gate: jax.Array,
    w_up: jax.Array,
    w_down: jax.Array,
    *,
    ep: str = "none",
    mesh: Mesh | None = None,
    config: EPConfig = EPConfig(),
    plan: ExpertPlan | tuple[jax.Array, ...] | None = None,
    b_gate: jax.Array | None = None,
    b_up: jax.Array | None = None,
    b_down: jax.Array | None = None,
    activation: ExpertActivation = ExpertActivation(),
) -> tuple[jax.Array, EPStats]:
    """Routed gated-FFN experts: ``y[t] = sum_j w[t,j] * FFN_{ids[t,j]}(x[t])``; returns (y, stats).

    Shapes: x [T,d], expert_ids/combine_weights [T,k], w_gate/w_up [E,d,f],
    w_down [E,f,d], optional biases b_gate/b_up [E,f] and b_down [E,d] (gpt-oss).
    ``activation`` picks plain or clamped SwiGLU.  For ``standard``/``llep`` the
    mesh needs an axis named ``config.axis_name`` whose size D divides both T and
    E; biases are sharded and copied (LLEP) exactly like their expert's weights.
    ``plan`` (LLEP only) overrides the host planner, e.g. with arrays fed into a
    jitted step.
    """
    if ep not in EP_MODES:
        raise ValueError(f"ep must be one of {EP_MODES}, got {ep!r}")
    if not isinstance(activation, ExpertActivation):
        raise ValueError(f"activation must be an ExpertActivation, got {activation!r}")
    biases = ExpertBiases(b_gate, b_up, b_down)
    check_routing_args(x, expert_ids, combine_weights, w_gate, w_up, w_down, biases)
    tokens, top_k = expert_ids.shape
    num_experts = w_gate.shape[0]
    if ep == "none":
        y = routed_ffn_reference(
            x,
            expert_ids,
            combine_weights,
            w_gate,
            w_up,
            w_down,
            biases=biases,
            activation=activation,
            gmm_impl=config.gmm_impl,
            gmm_interpret=config.gmm_interpret,
        )
        zero = jnp.zeros((), jnp.int32)
        return y, EPStats(zero, jnp.full((1,), tokens * top_k, jnp.int32), zero)

    axis = config.axis_name
    if mesh is None or axis not in mesh.shape:
        raise ValueError(f"ep={ep!r} needs a mesh with a {axis!r} axis, got {mesh}")
    num_devices = mesh.shape[axis]
    batch_axes = tuple(a for a in config.batch_axes if a in mesh.shape and a != axis)
    groups = math.prod(mesh.shape[a] for a in batch_axes)  # data replicas, each its own EP group
    if num_experts % num_devices or tokens % (num_devices * groups):
        raise ValueError(
            f"mesh axis {axis!r} of size {num_devices} must divide the number of "
            f"experts ({num_experts}), and {batch_axes + (axis,)} (size "
            f"{num_devices * groups}) the tokens ({tokens})"
        )
    if plan is not None and ep != "llep":
        raise ValueError(f"plan is only used with ep='llep', got ep={ep!r}")
    if ep == "llep" and groups > 1 and (plan is not None or config.planner == "host"):
        raise ValueError(
            f"EPConfig.planner={config.planner!r} / a precomputed plan make one plan for "
            f"all tokens; with batch axes {batch_axes} each data replica needs its own: "
            "use planner='device'"
        )
    per_device = num_experts // num_devices
    group_copies = tokens // groups * top_k  # token copies one EP group routes
    local_copies = group_copies // num_devices
    compute_rows = None  # rows the experts run on per device; None = the whole receive buffer
    plan_arrays = ()
    num_slots = per_device
    if ep == "llep":
        if plan is None and config.planner == "device":
            compute_rows = plan_capacity(
                group_copies, num_devices, config.min_chunk, config.alpha, config.fallback_lambda
            )
        elif plan is None:
            plan_arrays = llep_plan_arrays(expert_ids, num_experts, num_devices, config)
        else:
            plan_arrays = tuple(
                jnp.asarray(a, jnp.int32) for a in (plan.arrays() if isinstance(plan, ExpertPlan) else plan)
            )
        num_slots = per_device + (plan_arrays[3].shape[1] if plan_arrays else config.max_extra_experts)

    transport = _resolve_transport(config.transport, compute_rows is not None)
    factor = config.capacity_factor
    if transport == "all_to_all":
        capacity = local_copies if factor is None else math.ceil(factor * local_copies / num_devices)
        capacity = max(1, min(capacity, local_copies))
        exchange = dispatch.exchange_all_to_all
    else:
        worst = local_copies * num_devices if compute_rows is None else compute_rows
        capacity = worst if factor is None else math.ceil(factor * local_copies)
        capacity = max(1, min(capacity, local_copies * num_devices))
        exchange = dispatch.exchange_ragged
        if transport == "bounded":
            exchange = functools.partial(_bounded, pair_rows=config.pair_rows)

    def body(x_l, ids_l, cw_l, wg, wu, wd, bias_l, *plan_l):
        flat_ids = ids_l.reshape(-1)
        if ep == "llep":
            if not plan_l:  # device planner: this EP group's counts, planned on every device of it
                counts = jax.lax.psum(jnp.bincount(flat_ids, length=num_experts).astype(jnp.int32), axis)
                plan_l = plan_llep_device(
                    counts,
                    num_devices,
                    config.max_extra_experts,
                    config.min_chunk,
                    config.alpha,
                    config.fallback_lambda,
                ).arrays()
            seg_end, seg_device, seg_slot, extra = plan_l
            routed = dispatch.route_planned(flat_ids, num_experts, seg_end, seg_device, seg_slot, axis)
            copies, n_copied = _copies((wg, wu, wd, bias_l), extra, axis, num_experts)
        else:
            routed = dispatch.route_standard(flat_ids, per_device)
            copies, n_copied = None, jnp.zeros((), jnp.int32)
        expert_fn = functools.partial(
            _two_bank_expert_fn,
            native=(wg, wu, wd, bias_l),
            copies=copies,
            activation=activation,
            gmm_impl=config.gmm_impl,
            gmm_interpret=config.gmm_interpret,
        )
        x_entries = jnp.repeat(x_l, top_k, axis=0)
        y_entries, kept, processed = exchange(
            x_entries, routed, num_devices, capacity, num_slots, expert_fn, axis, compute_rows
        )
        if config.overflow == "error":
            y_entries = jnp.where(kept[:, None], y_entries, jnp.nan)
        y = combine(y_entries.reshape(ids_l.shape + (-1,)), cw_l)
        dropped = jax.lax.psum(jnp.sum(~kept).astype(jnp.int32), batch_axes + (axis,))
        if batch_axes:
            n_copied = jax.lax.psum(n_copied, batch_axes)
        return y, dropped, processed.reshape(1).astype(jnp.int32), n_copied

    sharded = P(batch_axes + (axis,))  # tokens: split over the data replicas and the expert axis
    experts = P(axis)  # weights: split over the expert axis, replicated over the data replicas
    y, dropped, load, rounds = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(sharded,) * 3 + (experts,) * 4 + (P(),) * len(plan_arrays),
        out_specs=(sharded, P(), sharded, P()),
        check_vma=_check_vma(config),
    )(x, expert_ids, combine_weights, w_gate, w_up, w_down, biases, *plan_arrays)
    if config.overflow == "error":
        jax.debug.callback(_log_overflow, dropped)
    return y, EPStats(dropped, load, rounds)


def _bounded(x_entries, routed, num_devices, capacity, num_slots, expert_fn, axis, compute_rows, pair_rows):
    """The bounded transport receives at most ``capacity`` rows and computes all of them."""
    capacity = capacity if compute_rows is None else min(capacity, compute_rows)
    return exchange_bounded(x_entries, routed, num_devices, capacity, num_slots, expert_fn, axis, pair_rows)


def _copies(tensors, extra: jax.Array, axis: str, num_experts: int):
    """This device's LLEP copies (same structure as ``tensors``), and how many experts were copied.

    Weights and biases travel together (``weight_exchange``), so a copied expert
    carries its biases and their gradients sum back into the owner's.
    """
    leaves, treedef = jax.tree.flatten(tensors)
    copies = exchange_weight_copies(tuple(leaves), extra, axis, num_experts)
    _, n_copied = copied_experts(extra, num_experts)
    return jax.tree.unflatten(treedef, list(copies)), n_copied


def _check_vma(config: EPConfig) -> bool:
    """Type-check manual axes, except for the Triton kernel in interpret mode.

    The Pallas kernels declare their outputs' varying axes (``pallas_kernels.vma``),
    so compiled TPU/GPU kernels and the TPU interpreter run under ``check_vma``.
    The generic Pallas interpreter used for Triton on the CPU drops the varying
    axes of its scan carry (a JAX limitation), so that one test path turns the
    check off; the collectives here transpose the same way either way.
    """
    return not (config.gmm_interpret and resolve_impl(config.gmm_impl) == "triton")


def _two_bank_expert_fn(x_sorted, group_sizes, *, native, copies, activation, gmm_impl, gmm_interpret):
    """Slots ``[0, E/D)`` on the local weights, slots after them on the LLEP copies.

    Why two grouped matmuls and not one over ``concatenate([local, copies])``: the
    concatenation is a new ``[E/D + max_extra, ...]`` buffer, so every local
    expert's weights would be duplicated in temp memory on every device (measured:
    it made LLEP's compiled peak exceed standard EP's).  Rows are sorted by slot,
    so the copies' rows follow the native ones; they are rotated to the front for
    the second matmul and back after it (rows past a call's groups come out zero).
    """
    kw = dict(activation=activation, gmm_impl=gmm_impl, gmm_interpret=gmm_interpret)
    wg, wu, wd, biases = native
    per_device = wg.shape[0]
    y = expert_ffn(x_sorted, group_sizes[:per_device], wg, wu, wd, biases=biases, **kw)
    if copies is None or copies[0].shape[0] == 0:
        return y
    start = jnp.sum(group_sizes[:per_device])
    cg, cu, cd, cb = copies
    y_copies = expert_ffn(jnp.roll(x_sorted, -start, axis=0), group_sizes[per_device:], cg, cu, cd, biases=cb, **kw)
    return y + jnp.roll(y_copies, start, axis=0)
