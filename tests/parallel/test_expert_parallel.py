"""standard EP and LLEP on 8 fake CPU devices equal the single-device reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxlab.parallel.device_planner import plan_llep_device
from tests.parallel.ep_problems import loss_and_grads
from jaxlab.parallel import (
    EPConfig,
    ExpertActivation,
    ExpertBiases,
    clamped_swiglu,
    pair_counts,
    plan_llep,
    raise_on_overflow,
    routed_experts,
    routed_ffn_reference,
)

D, T, K, DM, F, E = 8, 64, 2, 16, 24, 16


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) >= D, "tests/conftest.py should force 8 host devices"
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


def _problem(skewed: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    probs = np.ones(E)
    if skewed:
        probs[3] = 60.0  # one hot expert takes ~80% of the first choices
    probs /= probs.sum()
    ids = np.stack([rng.choice(E, size=K, replace=False, p=probs) for _ in range(T)])
    args = (
        rng.normal(size=(T, DM)),
        ids,
        rng.random(size=(T, K)),
        rng.normal(size=(E, DM, F)) / 4,
        rng.normal(size=(E, DM, F)) / 4,
        rng.normal(size=(E, F, DM)) / 5,
    )
    return tuple(jnp.asarray(a, jnp.int32 if a is ids else jnp.float32) for a in args)


@pytest.mark.parametrize("skewed", [False, True], ids=["random", "skewed"])
def test_standard_and_llep_match_reference_outputs_and_gradients(mesh, skewed):
    args = _problem(skewed)
    (_, (y_ref, _)), grads_ref = loss_and_grads("none", None, EPConfig(), args)
    np.testing.assert_allclose(y_ref, routed_ffn_reference(*args), atol=1e-6)
    loads = {}
    for ep in ("standard", "llep"):
        config = EPConfig(max_extra_experts=2, min_chunk=4)
        (_, (y, stats)), grads = loss_and_grads(ep, mesh, config, args)
        np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=1e-5)
        for g, g_ref in zip(grads, grads_ref):
            np.testing.assert_allclose(g, g_ref, atol=1e-5, rtol=1e-5)
        # Every token copy processed exactly once.
        assert int(stats.dropped) == 0
        assert int(stats.device_load.sum()) == T * K
        loads[ep] = np.asarray(stats.device_load)
    counts = np.bincount(np.asarray(args[1]).ravel(), minlength=E)
    np.testing.assert_array_equal(loads["llep"], plan_llep_device(jnp.asarray(counts), D, 2, 4).device_load)
    if skewed:
        assert loads["llep"].max() < loads["standard"].max()


def _biases(seed: int = 0) -> ExpertBiases:
    rng = np.random.default_rng(seed + 100)
    return ExpertBiases(*(jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((E, F), (E, F), (E, DM))))


GPT_OSS_ACT = ExpertActivation("clamped_swiglu", alpha=1.702, limit=1.0)  # small limit: the clamps bite


def _biasedloss_and_grads(ep, mesh, config, args, biases):
    x, ids, cw, wg, wu, wd = args

    def loss(x, wg, wu, wd, bg, bu, bd):
        y, stats = routed_experts(
            x,
            ids,
            cw,
            wg,
            wu,
            wd,
            ep=ep,
            mesh=mesh,
            config=config,
            b_gate=bg,
            b_up=bu,
            b_down=bd,
            activation=GPT_OSS_ACT,
        )
        return jnp.sum(jnp.sin(y) * y), (y, stats)

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(7)), has_aux=True))(x, wg, wu, wd, *biases)


def _dense_gpt_oss_reference(args, biases):
    """Every expert on every token, then pick the routed ones: independent of sorting and gmm."""
    x, ids, cw, wg, wu, wd = args
    gate = jnp.einsum("td,edf->tef", x, wg) + biases.gate
    up = jnp.einsum("td,edf->tef", x, wu) + biases.up
    act = clamped_swiglu(gate, up, GPT_OSS_ACT.alpha, GPT_OSS_ACT.limit)
    y_e = jnp.einsum("tef,efd->ted", act, wd) + biases.down
    picked = jnp.take_along_axis(y_e, ids[:, :, None], axis=1)
    return jnp.einsum("tk,tkd->td", cw, picked)


@pytest.mark.parametrize("skewed", [False, True], ids=["random", "skewed"])
def test_biased_clamped_experts_match_reference_outputs_and_gradients(mesh, skewed):
    """gpt-oss experts: biases follow their expert (LLEP copies included) and bias grads sum to the owner."""
    args, biases = _problem(skewed), _biases()
    (_, (y_ref, _)), grads_ref = _biasedloss_and_grads("none", None, EPConfig(), args, biases)
    np.testing.assert_allclose(y_ref, _dense_gpt_oss_reference(args, biases), atol=1e-4, rtol=1e-5)
    gate = np.einsum("td,edf->tef", np.asarray(args[0]), np.asarray(args[3])) + np.asarray(biases.gate)
    assert np.mean(gate > GPT_OSS_ACT.limit) > 0.05  # the clamp is exercised
    counts = np.bincount(np.asarray(args[1]).ravel(), minlength=E)
    for ep in ("standard", "llep"):
        config = EPConfig(max_extra_experts=2, min_chunk=4)
        (_, (y, stats)), grads = _biasedloss_and_grads(ep, mesh, config, args, biases)
        np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=1e-5)
        for name, g, g_ref in zip(("x", "w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down"), grads, grads_ref):
            np.testing.assert_allclose(g, g_ref, atol=1e-5, rtol=1e-5, err_msg=f"ep={ep}: d/d{name}")
        assert int(stats.dropped) == 0 and int(stats.device_load.sum()) == T * K
    if skewed:  # the hot expert's weights and biases really were copied, so copy gradients were summed back
        assert plan_llep(counts, D, 2, 4).arrays()[3].max() >= 0


def test_llep_with_a_precomputed_plan_and_capacity_from_it(mesh):
    args = _problem(skewed=True, seed=1)
    ids = np.asarray(args[1])
    by_source = np.stack([np.bincount(r.ravel(), minlength=E) for r in ids.reshape(D, -1)])
    plan = plan_llep(by_source.sum(0), D, max_extra=3, min_chunk=2)
    local = T // D * K
    capacity_factor = pair_counts(plan, by_source).max() * D / local  # exactly enough rows
    config = EPConfig(max_extra_experts=3, capacity_factor=capacity_factor)
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="llep", mesh=mesh, config=config, plan=plan.arrays()))(*args)
    np.testing.assert_allclose(y, routed_ffn_reference(*args), atol=1e-5, rtol=1e-5)
    assert int(stats.dropped) == 0
    np.testing.assert_array_equal(stats.device_load, plan.device_load)


def test_overflow_is_counted_and_never_silent(mesh):
    args = _problem(skewed=True, seed=2)
    ids = np.asarray(args[1])
    capacity = (T // D * K) // D  # capacity_factor 1: an even share per device pair
    dest = (ids // (E // D)).reshape(D, -1)
    expected = sum(max(0, int(np.sum(row == j)) - capacity) for row in dest for j in range(D))
    assert expected > 0
    y_ref = routed_ffn_reference(*args)

    drop = EPConfig(capacity_factor=1.0, overflow="drop")
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="standard", mesh=mesh, config=drop))(*args)
    assert int(stats.dropped) == expected
    assert np.all(np.isfinite(y)) and not np.allclose(y, y_ref, atol=1e-5)
    with pytest.raises(RuntimeError, match=f"could not place {expected} token copies"):
        raise_on_overflow(stats)

    strict = EPConfig(capacity_factor=1.0, overflow="error")
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="standard", mesh=mesh, config=strict))(*args)
    assert int(stats.dropped) == expected
    bad_rows = np.isnan(np.asarray(y)).any(axis=1)
    assert bad_rows.any()
    np.testing.assert_allclose(y[~bad_rows], y_ref[~bad_rows], atol=1e-5, rtol=1e-5)


def test_ragged_transport_lowers_forward_and_backward(mesh):
    """XLA:CPU cannot run ragged_all_to_all; check the TPU/GPU path traces, types and lowers."""
    x, ids, cw, wg, wu, wd = _problem(skewed=True)
    config = EPConfig(transport="ragged")
    for ep in ("standard", "llep"):

        def loss(x, wg):
            return routed_experts(x, ids, cw, wg, wu, wd, ep=ep, mesh=mesh, config=config)[0].sum()

        text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, wg).as_text()
        assert "ragged_all_to_all" in text


def test_bad_arguments_name_the_problem(mesh):
    x, ids, cw, wg, wu, wd = _problem(skewed=False)
    with pytest.raises(ValueError, match="ep must be one of"):
        routed_experts(x, ids, cw, wg, wu, wd, ep="expert")
    with pytest.raises(ValueError, match="needs a mesh"):
        routed_experts(x, ids, cw, wg, wu, wd, ep="standard")
    with pytest.raises(ValueError, match="w_down must be"):
        routed_experts(x, ids, cw, wg, wu, wg, ep="none")
    with pytest.raises(ValueError, match="must divide"):
        routed_experts(x[:60], ids[:60], cw[:60], wg, wu, wd, ep="standard", mesh=mesh)
    with pytest.raises(ValueError, match="b_down must be"):
        routed_experts(x, ids, cw, wg, wu, wd, b_down=jnp.zeros((E, F)))
    with pytest.raises(ValueError, match="ExpertActivation.kind"):
        ExpertActivation("gelu")
    with pytest.raises(ValueError, match="activation must be an ExpertActivation"):
        routed_experts(x, ids, cw, wg, wu, wd, activation="clamped_swiglu")
    with pytest.raises(ValueError, match="EPConfig.overflow"):
        EPConfig(overflow="ignore")
