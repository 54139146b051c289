"""On-device (jitted) LLEP planner: host-planner invariants, load bound, lambda and alpha."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.parallel import plan_llep, plan_standard
from jaxlab.parallel.device_planner import capacity, plan_llep_device
from tests.parallel.plan_checks import check_plan
from tests.parallel.test_planner import D, E, _skewed, _zipf

_plan = jax.jit(plan_llep_device, static_argnums=(1, 2, 3, 4, 5))


def _balanced(counts):
    return -(-int(counts.sum()) // D)


@pytest.mark.parametrize("make_counts", [_skewed, _zipf], ids=["one_hot_expert", "zipf"])
@pytest.mark.parametrize("max_extra", [1, 2, 4])
def test_invariants_bound_and_no_worse_than_host(make_counts, max_extra):
    counts = make_counts(np.random.default_rng(max_extra))
    plan = _plan(jnp.asarray(counts), D, max_extra, 8, 1.0, 1.0)
    check_plan(plan, counts, max_extra, D)
    load = np.asarray(plan.device_load)
    host = plan_llep(counts, D, max_extra=max_extra, min_chunk=8)
    cap = capacity(int(counts.sum()), D, 8)
    assert int(plan.over_capacity) == int(np.maximum(load - cap, 0).sum())
    assert int(plan.over_capacity) == 0 or max_extra == 1  # one copy slot can be too few (zipf)
    if int(plan.over_capacity) == 0:  # enough copy slots: the bound holds and beats the host
        assert load.max() <= host.device_load.max()
        assert load.max() - _balanced(counts) < 8  # within min_chunk of balanced


def test_copied_pieces_hold_min_chunk_unless_last_of_their_expert():
    owner = np.arange(E)[:, None] // (E // D)
    copied_any = False
    for seed in range(12):
        counts = _zipf(np.random.default_rng(seed))
        plan = _plan(jnp.asarray(counts), D, 4, 32, 1.0, 1.0)
        seg_len = np.diff(np.asarray(plan.seg_end), axis=1, prepend=0)
        copied = (np.asarray(plan.seg_device) != owner) & (seg_len > 0)
        last = np.zeros_like(copied)
        for e in np.flatnonzero(seg_len.sum(1)):
            last[e, np.flatnonzero(seg_len[e] > 0)[-1]] = True
        copied_any |= copied.any()
        assert np.all(seg_len[copied & ~last] >= 32), f"seed {seed}"
    assert copied_any


def test_lambda_falls_back_to_plain_ep_and_alpha_leaves_slack():
    rng = np.random.default_rng(1)
    counts = rng.multinomial(4000, np.ones(E) / E)  # mild imbalance, max/mean < 1.3
    standard = plan_standard(counts, D).device_load
    assert standard.max() * D < 1.3 * counts.sum() and standard.max() > _balanced(counts)
    plain = _plan(jnp.asarray(counts), D, 2, 8, 1.0, 1.3)
    np.testing.assert_array_equal(plain.device_load, standard)
    assert np.all(np.asarray(plain.extra_experts) == -1)
    assert int(plain.over_capacity) == 0
    assert standard.max() <= capacity(int(counts.sum()), D, 8, lambda_=1.3)

    hot = _skewed(rng, hot_share=0.9)
    tight, loose = (_plan(jnp.asarray(hot), D, 4, 8, alpha, 1.3) for alpha in (1.0, 1.5))
    for plan in (tight, loose):
        check_plan(plan, hot, 4, D)
    assert np.asarray(loose.device_load).max() <= capacity(int(hot.sum()), D, 8, alpha=1.5)
    assert np.asarray(tight.device_load).max() < np.asarray(loose.device_load).max()
    assert (np.asarray(loose.extra_experts) >= 0).sum() < (np.asarray(tight.extra_experts) >= 0).sum()


def test_no_host_callback_and_overflow_reported_when_copies_run_out():
    counts = _skewed(np.random.default_rng(0))
    jaxpr = str(jax.make_jaxpr(lambda c: plan_llep_device(c, D, 2, 8))(jnp.asarray(counts)))
    assert "callback" not in jaxpr
    plan = _plan(jnp.asarray(counts), D, 0, 8, 1.0, 1.0)  # no copies: the hot owner keeps all
    check_plan(plan, counts, 0, D)
    cap = capacity(int(counts.sum()), D, 8)
    standard = plan_standard(counts, D).device_load
    assert int(plan.over_capacity) == int(np.maximum(standard - cap, 0).sum()) > 0
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        plan_llep_device(jnp.asarray(counts), D, 2, 8, alpha=0.5)
