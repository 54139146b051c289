"""LLEP weight exchange: only the planned experts move, their gradients sum back to the owner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from jaxlab.parallel import EPConfig, routed_experts
from jaxlab.parallel.device_planner import plan_llep_device
from jaxlab.parallel.hlo_collectives import collectives
from jaxlab.parallel.weight_exchange import SCOPE, exchange_weight_copies

D, T, K, DM, F, E = 8, 128, 2, 16, 24, 16
SKEWS = {"uniform": 0.0, "hot50": 0.5, "hot90": 0.9, "two_hot": -1.0}


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


def _ids(skew: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if skew < 0:  # two hot experts on different owners
        first = np.where(rng.random(T) < 0.8, rng.choice([3, 10], T), rng.integers(0, E, T))
    else:
        first = np.where(rng.random(T) < skew, 3, rng.integers(0, E, T))
    second = (first + 1 + rng.integers(0, E - 1, T)) % E
    return np.stack([first, second], 1).astype(np.int32)


def _tensors(seed: int = 0):
    rng = np.random.default_rng(seed + 7)
    shapes = ((E, DM, F), (E, DM, F), (E, F, DM), (E, F), (E, DM))
    return tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes)


def _plan_extra(ids: np.ndarray, max_extra: int = 2, min_chunk: int = 4) -> jax.Array:
    counts = jnp.bincount(jnp.asarray(ids).reshape(-1), length=E).astype(jnp.int32)
    return plan_llep_device(counts, D, max_extra, min_chunk).extra_experts


def _exchange(mesh, tensors, extra):
    body = lambda ws, ex: exchange_weight_copies(ws, ex, "expert", E)
    return jax.shard_map(body, mesh=mesh, in_specs=(P("expert"), P()), out_specs=P("expert"))(tensors, extra)


def _reference(tensors, extra):
    """Device d's slot j holds expert extra[d, j] (zeros for -1); autodiff of a gather sums copies."""
    safe = jnp.where(extra >= 0, extra, 0).reshape(-1)
    keep = (extra >= 0).reshape(-1)
    return tuple(jnp.where(keep.reshape((-1,) + (1,) * (w.ndim - 1)), w[safe], 0) for w in tensors)


@pytest.mark.parametrize("skew", list(SKEWS), ids=list(SKEWS))
def test_exchange_equals_gather_forward_and_gradients(mesh, skew):
    tensors, extra = _tensors(), _plan_extra(_ids(SKEWS[skew]))
    if skew != "uniform":
        assert int((extra >= 0).sum()) > 0
    rng = np.random.default_rng(1)
    cts = tuple(jnp.asarray(rng.normal(size=(D * extra.shape[1],) + w.shape[1:]), jnp.float32) for w in tensors)

    def loss(fn, ws):
        return sum(jnp.sum(c * ct) for c, ct in zip(fn(ws), cts))

    got = jax.jit(lambda ws: _exchange(mesh, ws, extra))(tensors)
    for g, r in zip(got, _reference(tensors, extra)):
        np.testing.assert_allclose(g, r, rtol=0, atol=0)
    grads = jax.jit(jax.grad(lambda ws: loss(lambda w: _exchange(mesh, w, extra), ws)))(tensors)
    grads_ref = jax.grad(lambda ws: loss(lambda w: _reference(w, extra), ws))(tensors)
    for g, r in zip(grads, grads_ref):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6)


def _problem(skew: float):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(T, DM)), jnp.float32)
    cw = jnp.asarray(rng.random(size=(T, K)), jnp.float32)
    wg, wu, wd, bg, bd = _tensors()
    return x, jnp.asarray(_ids(skew)), cw, wg / 4, wu / 4, wd / 5, bg, bd


def _grad_fn(ep, mesh, config):
    def loss(x, wg, wu, wd, bg, bd, ids, cw):
        y, stats = routed_experts(
            x, ids, cw, wg, wu, wd, ep=ep, mesh=mesh, config=config, b_gate=bg, b_up=bg * 0.5, b_down=bd
        )
        return jnp.sum(jnp.sin(y) * y), stats

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6)), has_aux=True))


@pytest.mark.parametrize("skew", ["hot50", "hot90", "two_hot"])
def test_llep_with_planned_exchange_matches_reference(mesh, skew):
    x, ids, cw, *params = _problem(SKEWS[skew])
    (_, _), grads_ref = _grad_fn("none", None, EPConfig())(x, *params, ids, cw)
    (_, stats), grads = _grad_fn("llep", mesh, EPConfig(min_chunk=4))(x, *params, ids, cw)
    assert int(stats.weight_rounds) > 0 and int(stats.dropped) == 0
    for name, g, r in zip(("x", "w_gate", "w_up", "w_down", "b_gate", "b_down"), grads, grads_ref):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5, err_msg=f"d/d{name}")


def test_compiled_weight_bytes_scale_with_the_plan_not_with_slots(mesh):
    """Each exchange round moves one expert (weights + biases); rounds = distinct copied experts."""
    x, ids, cw, *params = _problem(0.9)
    max_extra = 2
    config = EPConfig(min_chunk=4, max_extra_experts=max_extra)
    fn = _grad_fn("llep", mesh, config)
    found = collectives(fn.lower(x, *params, ids, cw).compile().as_text())
    weights = [c for c in found if SCOPE in c.op_name]
    expert_bytes = 4 * (3 * DM * F + 2 * F + DM)  # w_gate, w_up, w_down, b_gate, b_up, b_down
    forward = [c for c in weights if "transpose" not in c.op_name]
    assert forward and all(c.in_loop for c in weights)
    assert sum(c.bytes for c in forward) == expert_bytes  # one expert per round, whatever D and max_extra
    assert all(c.bytes <= expert_bytes for c in weights)
    # Nothing else moves expert weights: no other collective has a [.., DM, F] or [.., F, DM] shape.
    for c in found:
        if SCOPE not in c.op_name:
            assert not any(s[-2:] in ((DM, F), (F, DM)) for _, s in c.shapes if len(s) >= 2), c
    dense = (D - 1) * max_extra * expert_bytes  # what the replaced psum_scatter moved per device
    for skew, rounds_at_most in (("hot90", 1), ("two_hot", 2)):
        x, ids, cw, *params = _problem(SKEWS[skew])
        (_, stats), _ = fn(x, *params, ids, cw)
        extra = np.asarray(_plan_extra(np.asarray(ids), max_extra, 4))
        rounds = int(stats.weight_rounds)
        assert rounds == len(set(extra[extra >= 0].tolist())) and 0 < rounds <= rounds_at_most
        assert rounds * expert_bytes < dense / 4
    uniform = EPConfig(min_chunk=4, max_extra_experts=max_extra, fallback_lambda=1.5)
    x, ids, cw, *params = _problem(0.0)
    (_, stats), _ = _grad_fn("llep", mesh, uniform)(x, *params, ids, cw)
    assert int(stats.weight_rounds) == 0  # lambda fallback: plain EP, no weight moves
