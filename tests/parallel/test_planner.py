"""LLEP planner invariants: every token assigned once, cap respected, load balanced."""

import numpy as np
import pytest

from jaxlab.parallel import pair_counts, plan_llep, plan_standard
from tests.parallel.plan_checks import check_plan

D = 8
E = 32


def _skewed(rng, hot_share=0.8, total=4000):
    counts = rng.multinomial(int(total * (1 - hot_share)), np.ones(E) / E)
    counts[5] += int(total * hot_share)
    return counts


def _zipf(rng, total=4000):
    p = 1.0 / np.arange(1, E + 1) ** 1.2
    return rng.multinomial(total, rng.permutation(p / p.sum()))


def _check_plan(plan, counts, max_extra):
    check_plan(plan, counts, max_extra, D)


@pytest.mark.parametrize("make_counts", [_skewed, _zipf], ids=["one_hot_expert", "zipf"])
@pytest.mark.parametrize("max_extra", [0, 1, 4])
def test_plan_invariants(make_counts, max_extra):
    counts = make_counts(np.random.default_rng(max_extra))
    plan = plan_llep(counts, D, max_extra=max_extra, min_chunk=8)
    _check_plan(plan, counts, max_extra)
    standard = plan_standard(counts, D)
    assert plan.device_load.max() <= standard.device_load.max()
    if max_extra == 0:  # no copies allowed: the owners keep everything
        np.testing.assert_array_equal(plan.device_load, standard.device_load)


def test_generous_cap_reaches_the_balanced_optimum_and_splits_the_hot_expert():
    counts = _skewed(np.random.default_rng(0), hot_share=0.9)
    plan = plan_llep(counts, D, max_extra=4, min_chunk=1)
    assert plan.device_load.max() == -(-counts.sum() // D)
    hot_devices = set(plan.seg_device[5][np.diff(np.r_[0, plan.seg_end[5]]) > 0])
    assert len(hot_devices) >= D - 1


def test_min_chunk_keeps_small_spills_home_and_sizes_copied_chunks():
    counts = np.zeros(E, np.int64)
    counts[0] = 17  # 8 tokens spill past the balanced target of 9: fewer than min_chunk
    counts[8:] = 2
    plan = plan_llep(counts, D, max_extra=2, min_chunk=16)
    assert np.all(plan.extra_experts == -1)
    _check_plan(plan, counts, 2)

    counts[0] = 200  # a big spill: copied chunks hold >= min_chunk tokens even past the target
    plan = plan_llep(counts, D, max_extra=2, min_chunk=16)
    _check_plan(plan, counts, 2)
    seg_len = np.diff(np.r_[0, plan.seg_end[0]])
    copied = (plan.seg_device[0] != 0) & (seg_len > 0)
    assert copied.any() and np.all(seg_len[copied] >= 16)
    assert plan.device_load.max() < plan_standard(counts, D).device_load.max()


def test_pair_counts_conserve_tokens():
    rng = np.random.default_rng(3)
    by_source = rng.multinomial(300, np.ones(E) / E, size=D)
    by_source[:, 2] += 200
    counts = by_source.sum(0)
    plan = plan_llep(counts, D, max_extra=2, min_chunk=8)
    pairs = pair_counts(plan, by_source)
    np.testing.assert_array_equal(pairs.sum(1), by_source.sum(1))
    np.testing.assert_array_equal(pairs.sum(0), plan.device_load)


def test_bad_planner_arguments():
    with pytest.raises(ValueError, match="must divide the number of experts"):
        plan_llep(np.ones(30, int), D, 1, 1)
    with pytest.raises(ValueError, match="max_extra"):
        plan_llep(np.ones(E, int), D, -1, 1)
    with pytest.raises(ValueError, match="min_chunk"):
        plan_llep(np.ones(E, int), D, 1, 0)
    with pytest.raises(ValueError, match="1-D integer"):
        plan_standard(np.ones(E), D)
