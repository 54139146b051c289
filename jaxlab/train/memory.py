"""Peak resident memory per phase of a run (load, eval, first step, steps, save, export), measured.

Why per phase: ``getrusage`` gives one number for the whole process, which says *that* a run needs
10 GB but not *where*. On Linux the kernel's high-water mark (``VmHWM``) can be reset by writing
``5`` to ``/proc/self/clear_refs``; :func:`phase` resets it on entry and reads it on exit, so each
phase's figure is the true peak RSS reached while it ran (threads included: async checkpoint
writers count towards the phase they run in). Phases nest: a reset inside an inner phase first
credits the outer ones with the peak reached so far. Where the reset is not possible (macOS,
a locked-down ``/proc``), the figures are the process peak so far and say so (``reset: false``).

Repeated phases (one ``fit`` per PTL stage) are aggregated by name: the largest peak, the total
seconds and how many times the phase ran.
"""

from __future__ import annotations

import contextlib
import re
import resource
import sys
import time
from typing import Any, Iterator

_ROWS: dict[str, dict[str, Any]] = {}
_STACK: list[list] = []  # [name, running peak] of the phases now open, outermost first
_OVERALL = [0]


def _status_kib(field: str) -> int | None:
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def current_rss_bytes() -> int | None:
    """Resident set size now (``VmRSS``); ``None`` off Linux."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def _rusage_peak() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _high_water() -> int:
    kib = _status_kib("VmHWM")
    return _rusage_peak() if kib is None else kib * 1024


def _credit() -> int:
    """Read the high-water mark and credit it to every open phase (and to the process peak)."""
    hwm = _high_water()
    for entry in _STACK:
        entry[1] = max(entry[1], hwm)
    _OVERALL[0] = max(_OVERALL[0], hwm)
    return hwm


def _reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the kernel (glibc ``malloc_trim``); False where unavailable.

    Why: XLA:CPU allocates from several threads, so glibc spreads its buffers over several arenas, and a
    freed buffer's pages stay resident in its arena; the next phase's allocations, made from another
    arena, then add to RSS instead of reusing them. Trimming at each phase end starts the next phase from
    the live memory only.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def peak_bytes() -> int:
    """The process's peak RSS so far, correct across the resets :func:`phase` makes."""
    return max(_credit(), _OVERALL[0], _rusage_peak())


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Record the peak RSS reached while the body runs under ``name`` (see the module docstring)."""
    _credit()
    reset = _reset()
    _STACK.append([name, _high_water()])
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _credit()
        release_free_heap()
        _, peak = _STACK.pop()
        row = _ROWS.setdefault(name, {"phase": name, "peak_bytes": 0, "seconds": 0.0, "count": 0, "reset": reset})
        row["peak_bytes"] = max(row["peak_bytes"], peak)
        row["seconds"] += time.perf_counter() - t0
        row["count"] += 1
        row["end_bytes"] = current_rss_bytes()
        row["reset"] = row["reset"] and reset


def phases() -> list[dict[str, Any]]:
    """One row per phase name, in the order the phases first ran (copies; JSON-ready)."""
    return [dict(r) for r in _ROWS.values()]


def clear() -> None:
    """Forget the recorded phases (a new run in the same process)."""
    _ROWS.clear()


def format_phases(rows: list[dict[str, Any]] | None = None) -> str:
    """The per-phase table every runner prints at its end."""
    rows = phases() if rows is None else rows
    if not rows:
        return "no memory phases recorded"
    width = max(len(r["phase"]) for r in rows)
    lines = [
        f"{'phase':<{width}}  peak RSS GB  RSS after GB  seconds  runs",
        f"{'-' * width}  -----------  ------------  -------  ----",
    ]
    for r in rows:
        end = "-" if r.get("end_bytes") is None else f"{r['end_bytes'] / 1e9:.2f}"
        lines.append(
            f"{r['phase']:<{width}}  {r['peak_bytes'] / 1e9:>11.2f}  {end:>12}  {r['seconds']:>7.1f}  {r['count']:>4}"
        )
    how = (
        "measured: kernel high-water mark (VmHWM) reset at each phase start"
        if all(r["reset"] for r in rows)
        else "measured: process peak so far (the high-water mark could not be reset here)"
    )
    return "\n".join(lines) + f"\n({how}; whole process peak {peak_bytes() / 1e9:.2f} GB)"
