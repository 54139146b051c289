"""What a compiled EP program costs, read from XLA itself: per-device memory and collective bytes.

Why: the earlier bench modelled both from the plan, and the model disagreed
with the program (worst-case buffers, a dense weight exchange).  Here:

* memory is ``compiled.memory_analysis()`` of the SPMD-partitioned program,
  i.e. one device's buffers (every device runs the same static shapes);
* collective bytes are each collective instruction's per-device result size in
  ``compiled.as_text()`` (``jaxlab.parallel.hlo_collectives``).  A collective
  inside a loop runs once per iteration, which the HLO cannot tell: the caller
  gives the trip count of each loop by the named scope its collectives carry
  (``weight_exchange.SCOPE``: copied experts; ``bounded_exchange.SCOPE``:
  rounds); a looped collective with no known trip count is an error, never a
  guess.
"""

from __future__ import annotations

from typing import Mapping

from experiments.llep.cost_model import wire_bytes
from jaxlab.parallel.hlo_collectives import collectives


def memory(compiled) -> dict[str, int]:
    """Per-device bytes: temp, argument, output, alias, and peak = argument + output + temp - alias.

    ``peak`` counts every buffer as live at once (an upper bound; the temp
    allocation is already the buffer assigner's packed peak of intermediates).
    XLA's own ``peak_memory_in_bytes`` is kept as ``xla_peak``: on XLA:CPU it
    leaves the temp allocation out (it comes out near argument + output), so it
    is not used.
    """
    stats = compiled.memory_analysis()
    out = {k: int(getattr(stats, f"{k}_size_in_bytes")) for k in ("temp", "argument", "output", "alias")}
    out["xla_peak"] = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def traffic(hlo_text: str, trip_counts: Mapping[str, int], num_devices: int) -> list[dict]:
    """Every collective of the compiled program with how often it runs and its wire bytes per device."""
    rows = []
    for c in collectives(hlo_text):
        scope = next((s for s in trip_counts if s in c.op_name), None)
        if c.in_loop and scope is None:
            raise ValueError(
                f"collective {c.op} ({c.op_name!r}) runs in a loop with no known trip "
                f"count; known scopes: {sorted(trip_counts)}"
            )
        calls = int(trip_counts[scope]) if c.in_loop else 1
        group = c.group_size or num_devices
        rows.append(
            {
                "op": c.op,
                "bytes": c.bytes,
                "calls": calls,
                "group": group,
                "scope": scope or "",
                "wire_bytes": wire_bytes(c.op, c.bytes, group),
            }
        )
    return rows


def total_wire_bytes(rows: list[dict]) -> float:
    """Bytes one device receives over the whole layer."""
    return sum(r["calls"] * r["wire_bytes"] for r in rows)
