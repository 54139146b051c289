"""Modelled quantities: bytes moved, peak bytes per device, collective time.

Only the expert matmuls are measured (``timing.py``); everything here is
arithmetic on the plan, stated so the numbers can be checked by hand:

* bytes moved per device = max(sent, received) over token rows that leave
  their device (dispatch + combine, ``d_model`` activations each way) plus,
  for LLEP, expert weight copies (3 matrices of ``d_model x d_ff``).  Weight
  copies count the bytes each device receives (``broadcast``: copies of one
  expert travel as a pipelined broadcast, so the owner's link carries each
  expert about once) or max(sent, received) (``egress``: the owner sends
  every copy itself);
* peak bytes per device = weights held (native + copies) + activations of the
  rows it processes (input ``d``, gate/up/hidden ``3 f``, output ``d``) + its
  own dispatch/combine buffers (``2 * local copies * d``);
* collective time = sum over collectives of (latency + max bytes / bandwidth).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxlab.parallel import ExpertPlan, pair_counts


@dataclasses.dataclass(frozen=True)
class Shape:
    """An MoE layer: experts, top-k, model and FFN width, tokens per step (all devices)."""

    name: str
    experts: int
    top_k: int
    d_model: int
    d_ff: int
    tokens: int

    @property
    def expert_params(self) -> int:
        return 3 * self.d_model * self.d_ff

    @property
    def flops_per_row(self) -> int:
        return 2 * self.expert_params


@dataclasses.dataclass(frozen=True)
class Link:
    """Interconnect model: bytes/s per device and fixed cost per collective."""

    bytes_per_s: float
    latency_s: float = 10e-6


def plan_traffic(plan: ExpertPlan, by_source: np.ndarray, shape: Shape, act_bytes: int,
                 weight_bytes: int, weight_transfer: str = "broadcast") -> dict[str, np.ndarray]:
    """Per-device bytes of token traffic and of weight copies (sent, received)."""
    pairs = pair_counts(plan, by_source)
    remote = pairs - np.diag(np.diag(pairs))
    row = shape.d_model * act_bytes
    tokens_out = remote.sum(1) * row
    tokens_in = remote.sum(0) * row
    per_device = shape.experts // by_source.shape[0]
    copies_in = (plan.extra_experts >= 0).sum(1)
    owners = plan.extra_experts[plan.extra_experts >= 0] // per_device
    copied = np.unique(plan.extra_experts[plan.extra_experts >= 0])
    if weight_transfer == "broadcast":
        copies_out = np.bincount(copied // per_device, minlength=by_source.shape[0])
    elif weight_transfer == "egress":
        copies_out = np.bincount(owners, minlength=by_source.shape[0])
    else:
        raise ValueError(f"weight_transfer must be 'broadcast' or 'egress', got {weight_transfer!r}")
    copy_bytes = shape.expert_params * weight_bytes
    return {"token_bytes": 2 * np.maximum(tokens_out, tokens_in),  # dispatch + combine
            "weight_bytes": np.maximum(copies_in, copies_out) * copy_bytes}


def peak_bytes(plan: ExpertPlan, shape: Shape, num_devices: int, act_bytes: int,
               weight_bytes: int) -> np.ndarray:
    """Peak bytes held per device during the layer (see module docstring)."""
    held = shape.experts // num_devices + (plan.extra_experts >= 0).sum(1)
    weights = held * shape.expert_params * weight_bytes
    rows = plan.device_load * (2 * shape.d_model + 3 * shape.d_ff) * act_bytes
    buffers = 2 * (shape.tokens // num_devices) * shape.top_k * shape.d_model * act_bytes
    return weights + rows + buffers


def collective_seconds(traffic: dict[str, np.ndarray], link: Link, with_weights: bool) -> float:
    """Dispatch + combine all-to-alls (and the weight-copy exchange for LLEP)."""
    token = traffic["token_bytes"].max() / 2  # each direction carries half the counted bytes
    seconds = 2 * (link.latency_s + token / link.bytes_per_s)
    if with_weights:
        seconds += link.latency_s + traffic["weight_bytes"].max() / link.bytes_per_s
        seconds += link.latency_s  # all-gather of per-expert counts for the planner
    return seconds
