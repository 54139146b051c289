"""The modelled part of the LLEP bench: a layer shape and a link model for the HLO's collectives.

Everything measured lives elsewhere (``compiled.py``: memory and collective
bytes read from the compiled programs; ``share.py``: per-device compute timed
on this CPU).  What is modelled is only how long the collectives the compiled
program runs would take on an interconnect, stated so it can be checked by hand:

* wire bytes per device of one collective whose per-device result is ``B``
  bytes over a group of ``G`` devices (ring algorithms): all-to-all and
  all-gather ``(G-1)/G x B`` (what arrives from the others), all-reduce
  ``2 (G-1)/G x B`` (reduce-scatter + all-gather), reduce-scatter
  ``(G-1) x B``, collective-permute ``B``;
* time of one collective = ``latency + wire bytes / bandwidth``, collectives one
  after another (no overlap with compute), times how often it runs.
"""

from __future__ import annotations

import dataclasses


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


def wire_bytes(op: str, result_bytes: int, group: int) -> float:
    """Bytes one device receives over the link for one collective (ring algorithms)."""
    if group <= 1:
        return 0.0
    share = (group - 1) / group
    if op in ("all-to-all", "all-gather", "ragged-all-to-all"):
        return share * result_bytes
    if op == "all-reduce":
        return 2 * share * result_bytes
    if op == "reduce-scatter":
        return (group - 1) * result_bytes
    if op == "collective-permute":
        return float(result_bytes)
    raise ValueError(f"wire_bytes: unknown collective {op!r}")


def collective_seconds(traffic: list[dict], link: Link) -> float:
    """Sum over collectives of ``calls x (latency + wire bytes / bandwidth)``."""
    return sum(t["calls"] * (link.latency_s + t["wire_bytes"] / link.bytes_per_s) for t in traffic)
