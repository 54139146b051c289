"""experiments.bench.timing: medians with spread, noisy flags, and no rate from a non-positive time.

Pure Python with a fake clock, so nothing here depends on how busy the machine is.
"""

from __future__ import annotations

import itertools

import pytest

from experiments.bench.timing import (
    Rate,
    Stat,
    decode_rate,
    decode_slopes,
    fmt,
    fmt_ratio,
    r_squared,
    rate,
    ratio,
    slope,
    time_interleaved,
)


def test_stat_median_min_max_spread():
    s = Stat.of([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 5.0, 5)
    assert s.spread == pytest.approx(4.0 / 3.0)
    assert s.noisy(1.0) and not s.noisy(1.5)
    assert Stat.of([2.0, 2.0, 2.0]).spread == 0.0


def test_time_interleaved_warms_up_then_times_round_robin():
    ticks = itertools.count()
    calls: list[str] = []

    def fn(name):
        return lambda: calls.append(name)

    samples = time_interleaved({"a": fn("a"), "b": fn("b")}, repeats=5, warmup=2, clock=lambda: next(ticks))
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-ups, untimed
    assert calls[4:] == ["a", "b"] * 5  # then interleaved rounds
    assert samples == {"a": [1] * 5, "b": [1] * 5}  # each call spans one clock tick


def test_time_interleaved_refuses_fewer_than_five_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=3)


def test_rate_uses_median_and_inverts_min_max():
    r = rate(100.0, [1.0, 2.0, 2.0, 2.0, 4.0], max_spread=2.0)
    assert r.value == 50.0 and r.min == 25.0 and r.max == 100.0
    assert r.spread == pytest.approx(1.5) and not r.noisy and r.ok
    assert fmt(r) == "50 [25-100]"


def test_rate_over_spread_bound_is_flagged_not_printed():
    r = rate(100.0, [1.0, 2.0, 2.0, 2.0, 4.0], max_spread=0.25)
    assert r.noisy and not r.ok
    assert fmt(r) == "noisy (150%)"
    assert ratio(r, rate(10.0, [1.0] * 5)) is None
    assert fmt_ratio(None) == "-"


@pytest.mark.parametrize("bad", [0.0, -1e-3])
def test_non_positive_time_is_never_a_rate(bad):
    r = rate(8.0, [0.02, 0.02, bad, 0.02, 0.02])
    assert r.value is None and r.min is None and r.max is None and not r.ok
    assert "non-positive" in r.reason
    assert fmt(r) == "invalid"
    assert ratio(r, rate(8.0, [0.02] * 5)) is None
    assert ratio(rate(8.0, [0.02] * 5), r) is None


def test_slope_is_least_squares():
    assert slope([8, 24, 40], [1.0 + 0.5 * 8, 1.0 + 0.5 * 24, 1.0 + 0.5 * 40]) == pytest.approx(0.5)
    assert slope([0, 1, 2], [0.0, 2.0, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        slope([4, 4], [1.0, 2.0])


def test_decode_slopes_cancel_prefill_per_round_and_noise_cannot_become_a_rate():
    lengths = [8, 24, 40]
    prefill, per_step = 0.3, 0.01
    clean = {n: [prefill + per_step * n] * 5 for n in lengths}
    slopes = decode_slopes(lengths, clean)
    assert slopes == pytest.approx([per_step] * 5)
    assert rate(4.0, slopes).value == pytest.approx(400.0)
    # One round where the long run happened to be faster than the short one: slope < 0.
    noisy = {8: [0.38] * 4 + [0.50], 24: [0.54] * 5, 40: [0.70] * 4 + [0.45]}
    r = rate(4.0, decode_slopes(lengths, noisy))
    assert r.value is None and fmt(r) == "invalid"


def test_decode_slopes_need_equal_rounds():
    with pytest.raises(ValueError, match="same number"):
        decode_slopes([8, 40], {8: [1.0] * 5, 40: [2.0] * 4})


def test_rate_as_dict_round_trips_flags():
    d = rate(1.0, [1.0] * 5).as_dict()
    assert d == {"value": 1.0, "min": 1.0, "max": 1.0, "spread": 0.0, "noisy": False, "ok": True, "reason": ""}
    assert isinstance(Rate(None, None, None, float("inf"), True).as_dict()["spread"], float)


def test_r_squared_is_one_on_a_line_and_drops_off_it():
    assert r_squared([8, 24, 40], [0.3 + 0.01 * n for n in (8, 24, 40)]) == pytest.approx(1.0)
    assert r_squared([8, 24, 40], [0.5, 0.5, 0.5]) == 1.0
    # y = [0, 2, 1]: fitted line 0.5 + 0.5x, residuals -0.5, 1, -0.5 -> SSres 1.5, SStot 2.
    assert r_squared([0, 1, 2], [0.0, 2.0, 1.0]) == pytest.approx(0.25)


def _rounds(lengths, per_round):
    return {n: [row[i] for row in per_round] for i, n in enumerate(lengths)}


def test_decode_rate_on_clean_linear_rounds():
    lengths = [8, 24, 40]
    per_round = [[0.3 + 0.01 * n for n in lengths]] * 5
    r = decode_rate(4.0, lengths, _rounds(lengths, per_round))
    assert r.ok and r.value == pytest.approx(400.0) and r.reason == ""


def test_decode_rate_flags_a_round_that_is_not_linear():
    lengths = [8, 24, 40]
    # Slopes are all exactly 0.01 s/step (the spread check passes), but round 0 bends:
    # its middle run took 0.2 s longer than the line through the ends.
    bent = [0.38, 0.74, 0.70]
    per_round = [bent] + [[0.3 + 0.01 * n for n in lengths]] * 4
    r = decode_rate(4.0, lengths, _rounds(lengths, per_round))
    assert r.value == pytest.approx(400.0) and r.noisy and not r.ok
    assert "R^2" in r.reason and fmt(r) == "noisy (fit)"
    assert ratio(r, rate(4.0, [0.01] * 5)) is None


def test_decode_rate_never_divides_by_a_negative_slope():
    lengths = [8, 24, 40]
    per_round = [[0.5, 0.54, 0.45]] + [[0.3 + 0.01 * n for n in lengths]] * 4
    r = decode_rate(4.0, lengths, _rounds(lengths, per_round))
    assert r.value is None and fmt(r) == "invalid" and "non-positive" in r.reason


def test_decode_rate_needs_three_lengths():
    with pytest.raises(ValueError, match="lengths"):
        decode_rate(1.0, [8, 40], {8: [1.0] * 5, 40: [2.0] * 5})


def test_write_json_serialises_rates_and_other_objects(tmp_path):
    from pathlib import Path

    from experiments.bench.timing import write_json

    r = rate(10.0, [1.0, 2.0, 2.0, 2.0, 4.0], max_spread=2.0)
    path = write_json({"rate": r, "where": Path("/x"), "n": 3}, tmp_path / "new" / "out.json")
    import json

    back = json.loads(path.read_text())
    assert back == {"rate": r.as_dict(), "where": "/x", "n": 3} and back["rate"]["value"] == 5.0
