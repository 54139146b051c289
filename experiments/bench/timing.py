"""One timing method for every bench in ``experiments/``: figures that cannot print nonsense.

Why this exists: a best-of-N timing hides how noisy a shared machine is, and a decode rate
computed as ``tokens / (t_long - t_short)`` explodes (or goes negative) when noise makes the
two runs take the same time. Here every figure is the median of >= 5 timed repeats after a
warm-up, reported with its min and max; a figure whose relative spread ``(max - min) / median``
exceeds a stated bound is marked noisy (tables print ``noisy`` instead of a number); and a
per-step time is the least-squares slope of time against step count over several lengths,
which is turned into a rate only when it is positive.

Benches call ``time_interleaved`` (several contenders timed round-robin, so load drift hits
all of them alike), ``rate`` (work / median time) or ``decode_rate`` (per-step slope with a
check on the fit), ``ratio`` of two rates, then ``fmt`` / ``fmt_ratio`` for table cells.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

MIN_REPEATS = 5
DEFAULT_MAX_SPREAD = 0.25  # (max - min) / median above this marks a figure noisy
DEFAULT_MIN_R2 = 0.9  # a decode round whose time-vs-length fit explains less than this is not linear


@dataclass(frozen=True)
class Stat:
    """Median / min / max of repeated samples of one quantity (seconds, or a rate)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Stat":
        if not samples:
            raise ValueError("Stat.of: no samples")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    @property
    def spread(self) -> float:
        """Relative spread ``(max - min) / median``; infinite when the median is not positive."""
        return (self.max - self.min) / self.median if self.median > 0 else float("inf")

    def noisy(self, max_spread: float = DEFAULT_MAX_SPREAD) -> bool:
        return self.spread > max_spread


@dataclass(frozen=True)
class Rate:
    """``work / time`` with the spread carried over, or a reason why no rate is given.

    ``value is None`` means the timing could not be turned into a rate (a non-positive time);
    ``noisy`` means a value exists but its spread exceeds the bound, so tables must not
    quote it as a result.
    """

    value: float | None
    min: float | None
    max: float | None
    spread: float
    noisy: bool
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.noisy

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "min": self.min,
            "max": self.max,
            "spread": self.spread,
            "noisy": self.noisy,
            "ok": self.ok,
            "reason": self.reason,
        }


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = MIN_REPEATS,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Wall-clock samples for each callable, timed round-robin after ``warmup`` untimed calls each.

    Every callable must block until its result is ready (``block_until_ready`` for JAX).
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats: expected >= {MIN_REPEATS} (a median of fewer is not a figure), got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    return samples


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` on ``xs`` (needs >= 2 distinct xs)."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("slope: need matching xs/ys with at least two distinct xs")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def r_squared(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Coefficient of determination of the least-squares line through ``(xs, ys)``.

    1.0 for points on a line; 1.0 too when every y is equal (a flat line fits exactly, and
    ``rate`` refuses the zero slope anyway).
    """
    b = slope(xs, ys)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (my + b * (x - mx))) ** 2 for x, y in zip(xs, ys))
    return 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot


def decode_slopes(lengths: Sequence[int], samples: Mapping[int, Sequence[float]]) -> list[float]:
    """Seconds per generated step, one least-squares slope per repeat round.

    ``samples[n][i]`` is round ``i``'s time for a run of ``n`` steps; the fit over all lengths of
    one round cancels the shared prefill. The slopes may be <= 0 under noise: ``rate`` refuses them.
    """
    rounds = {len(samples[n]) for n in lengths}
    if len(rounds) != 1:
        raise ValueError("decode_slopes: every length needs the same number of repeats")
    return [slope(list(lengths), [samples[n][i] for n in lengths]) for i in range(rounds.pop())]


def rate(work: float, seconds: Sequence[float], max_spread: float = DEFAULT_MAX_SPREAD) -> Rate:
    """``work / seconds`` from repeated time samples; never divides by a non-positive time.

    If any sample is <= 0 (possible for a fitted per-step slope) no rate is given at all: one
    such sample means the noise is as large as the signal.
    """
    t = Stat.of(seconds)
    if t.min <= 0:
        return Rate(
            None,
            None,
            None,
            float("inf"),
            True,
            reason=f"non-positive time {t.min:.3g} s in {t.n} samples: noise exceeds the signal",
        )
    return Rate(work / t.median, work / t.max, work / t.min, t.spread, t.noisy(max_spread))


def decode_rate(
    work_per_step: float,
    lengths: Sequence[int],
    samples: Mapping[int, Sequence[float]],
    max_spread: float = DEFAULT_MAX_SPREAD,
    min_r2: float = DEFAULT_MIN_R2,
) -> Rate:
    """Steps/s (times ``work_per_step``) from runs of several lengths, checked three ways.

    Per repeat round, time is fitted linearly against length (``decode_slopes``); the rate is
    ``work_per_step / median slope``. No rate at all if any slope is <= 0; flagged noisy if the
    slopes spread more than ``max_spread`` or any round's fit has R^2 below ``min_r2`` (time did
    not grow linearly with length, so the slope is not a per-step cost). Needs >= 3 lengths for
    the fit check to mean anything.
    """
    if len(set(lengths)) < 3:
        raise ValueError(f"lengths: expected >= 3 distinct generation lengths for a checked fit, got {list(lengths)}")
    r = rate(work_per_step, decode_slopes(lengths, samples), max_spread)
    if r.value is None:
        return r
    rounds = len(samples[lengths[0]])
    worst = min(r_squared(list(lengths), [samples[n][i] for n in lengths]) for i in range(rounds))
    if worst < min_r2:
        return Rate(
            r.value,
            r.min,
            r.max,
            r.spread,
            True,
            reason=f"time vs length is not linear: worst round R^2 {worst:.3f} < {min_r2}",
        )
    return r


def ratio(a: Rate, b: Rate) -> float | None:
    """``a / b`` when both rates are trustworthy, else None (a ratio of a noisy figure is not a result)."""
    if not (a.ok and b.ok):
        return None
    return a.value / b.value


def fmt(r: Rate, digits: int = 0) -> str:
    """Table cell: ``median [min-max]``, or ``noisy (40%)`` / ``noisy (fit)`` / ``invalid`` instead of a number."""
    if r.value is None:
        return "invalid"
    if r.noisy:
        return "noisy (fit)" if r.reason else f"noisy ({r.spread:.0%})"  # a reason on a value: the fit check
    return f"{r.value:.{digits}f} [{r.min:.{digits}f}-{r.max:.{digits}f}]"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def write_json(out: Any, path: Path) -> Path:
    """Write a bench's results to ``path`` as JSON, ``Rate`` s as their ``as_dict()`` (anything else unknown as str).

    Creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    serial = json.loads(json.dumps(out, default=lambda r: r.as_dict() if isinstance(r, Rate) else str(r)))
    path.write_text(json.dumps(serial, indent=2))
    print(f"wrote {path}")
    return path
