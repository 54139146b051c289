"""Hand-computed GRPO pieces: advantages for each scaling, the clip edges' gradients, KL values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.grpo.advantages import group_advantages, weighted_rewards
from experiments.grpo.loss import LossConfig, aggregate, kl_penalty, per_token_objective


def test_weighted_rewards_skip_none_like_trl():
    total = weighted_rewards([[1.0, None, 0.0], [0.5, 2.0, None]], weights=[2.0, 0.5])
    np.testing.assert_allclose(total, [2.25, 1.0, 0.0])
    with pytest.raises(ValueError, match="weights"):
        weighted_rewards([[1.0], [2.0]], weights=[1.0])
    with pytest.raises(ValueError, match="per_func"):
        weighted_rewards([[1.0, 2.0], [1.0]])


def test_group_advantages_each_scaling():
    r = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    g = group_advantages(r, 4, scale_rewards="group")
    std = np.std([1, 0, 0, 0], ddof=1)  # Bessel-corrected, as TRL
    np.testing.assert_allclose(g.advantages[:4], (np.array([1, 0, 0, 0]) - 0.25) / (std + 1e-4), rtol=1e-6)
    np.testing.assert_allclose(g.advantages[4:], 0.0)
    np.testing.assert_array_equal(g.zero_std_groups, [False, True])
    assert g.frac_zero_std == 0.5 and g.keep.all()
    b = group_advantages(r, 4, scale_rewards="batch")
    np.testing.assert_allclose(b.advantages[:4], (np.array([1, 0, 0, 0]) - 0.25) / (r.std(ddof=1) + 1e-4), rtol=1e-6)
    n = group_advantages(r, 4, scale_rewards="none")
    np.testing.assert_allclose(n.advantages, [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    f = group_advantages(r, 4, filter_zero_std=True)
    np.testing.assert_array_equal(f.keep, [True] * 4 + [False] * 4)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(r, 4, scale_rewards="std")
    with pytest.raises(ValueError, match="multiple of num_generations"):
        group_advantages(r[:7], 4)


def _grad_wrt_logp(ratio, adv, cfg):
    def f(logp):
        loss, _ = per_token_objective(logp, jnp.zeros_like(logp), jnp.asarray([adv]), jnp.ones_like(logp), cfg)
        return loss.sum()

    return float(jax.grad(f)(jnp.log(jnp.asarray([[ratio]])))[0, 0])


@pytest.mark.parametrize(
    "ratio,adv,zero",
    [
        (1.5, 1.0, True),  # above 1 + eps_high with A > 0: clipped, no gradient
        (1.5, -1.0, False),  # above the edge but A < 0: the unclipped term is the min, gradient flows
        (0.5, -1.0, True),  # below 1 - eps_low with A < 0: clipped
        (0.5, 1.0, False),  # below the edge with A > 0: gradient flows
        (1.1, 1.0, False),  # inside the trust region
    ],
)
def test_gradient_zero_beyond_clip_edges_in_the_right_direction(ratio, adv, zero):
    cfg = LossConfig(epsilon_low=0.2, epsilon_high=0.28)
    g = _grad_wrt_logp(ratio, adv, cfg)
    if zero:
        assert g == 0.0
    else:  # d(-r A)/d logp = -r A
        assert g == pytest.approx(-ratio * adv, rel=1e-6)


def test_clip_higher_moves_only_the_upper_edge():
    cfg = LossConfig(epsilon_low=0.2, epsilon_high=0.28)
    assert _grad_wrt_logp(1.25, 1.0, cfg) != 0.0  # inside [0.8, 1.28]
    assert _grad_wrt_logp(1.25, 1.0, LossConfig(epsilon_low=0.2, epsilon_high=0.2)) == 0.0


def test_kl_estimators_hand_values():
    logp, ref = jnp.asarray([-1.0]), jnp.asarray([-1.5])
    d = -0.5
    assert float(kl_penalty(logp, ref, "k3")[0]) == pytest.approx(np.exp(d) - d - 1)
    assert float(kl_penalty(logp, ref, "k1")[0]) == pytest.approx(0.5)
    assert float(kl_penalty(logp, ref, "k2")[0]) == pytest.approx(0.125)
    assert float(kl_penalty(ref, ref, "k3")[0]) == 0.0


def test_aggregations_hand_values():
    loss = jnp.asarray([[1.0, 3.0, 9.0], [2.0, 9.0, 9.0]])
    mask = jnp.asarray([[1, 1, 0], [1, 0, 0]], jnp.float32)
    assert float(aggregate(loss, mask, LossConfig(loss_type="grpo"))) == pytest.approx((2.0 + 2.0) / 2)
    assert float(aggregate(loss, mask, LossConfig(loss_type="bnpo"))) == pytest.approx(6.0 / 3)
    assert float(aggregate(loss, mask, LossConfig(loss_type="dapo"), num_items=6.0)) == pytest.approx(1.0)
    cfg = LossConfig(loss_type="dr_grpo", max_completion_length=4)
    assert float(aggregate(loss, mask, cfg)) == pytest.approx(6.0 / (2 * 4))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="loss_type"):
        LossConfig(loss_type="ppo")
    with pytest.raises(ValueError, match="max_completion_length"):
        LossConfig(loss_type="dr_grpo")
    with pytest.raises(ValueError, match="ref_logps"):
        per_token_objective(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones(1), jnp.ones((1, 1)), LossConfig(beta=0.1))
