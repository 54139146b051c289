"""EP composed with data parallelism: mesh data=2 x expert=4, each replica its own EP group."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxlab.parallel import EPConfig, routed_experts
from jaxlab.parallel.device_planner import plan_llep_device
from jaxlab.parallel.hlo_collectives import collectives

DATA, EXPERT, T, K, DM, F, E = 2, 4, 128, 2, 16, 24, 8


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[: DATA * EXPERT]).reshape(DATA, EXPERT), ("data", "expert"))


def _problem(mesh):
    rng = np.random.default_rng(0)
    # The two replicas route differently (replica 0 hot on expert 1, replica 1 on expert 6),
    # so one global plan would be wrong for both.
    hot = np.where(np.arange(T) < T // 2, 1, 6)
    first = np.where(rng.random(T) < 0.8, hot, rng.integers(0, E, T))
    ids = np.stack([first, (first + 1 + rng.integers(0, E - 1, T)) % E], 1).astype(np.int32)
    tok = NamedSharding(mesh, P(("data", "expert")))
    exp = NamedSharding(mesh, P("expert"))
    put = lambda a, s: jax.device_put(jnp.asarray(a, jnp.int32 if a is ids else jnp.float32), s)
    tokens = [put(a, tok) for a in (rng.normal(size=(T, DM)), ids, rng.random((T, K)))]
    weights = [
        put(a, exp)
        for a in (
            rng.normal(size=(E, DM, F)) / 4,
            rng.normal(size=(E, DM, F)) / 4,
            rng.normal(size=(E, F, DM)) / 5,
            rng.normal(size=(E, F)),
            rng.normal(size=(E, DM)),
        )
    ]
    return tokens, weights


def _grad_fn(ep, mesh, config):
    def loss(x, wg, wu, wd, bg, bd, ids, cw):
        y, stats = routed_experts(x, ids, cw, wg, wu, wd, ep=ep, mesh=mesh, config=config, b_gate=bg, b_down=bd)
        return jnp.sum(jnp.sin(y) * y), (y, stats)

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6)), has_aux=True))


@pytest.mark.parametrize("ep", ["standard", "llep"])
def test_data2_expert4_equals_reference_without_gathering_tokens_over_data(mesh, ep):
    (x, ids, cw), weights = _problem(mesh)
    (_, (y_ref, _)), grads_ref = _grad_fn("none", None, EPConfig())(x, *weights, ids, cw)
    config = EPConfig(min_chunk=4)
    fn = _grad_fn(ep, mesh, config)
    (_, (y, stats)), grads = fn(x, *weights, ids, cw)
    np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=1e-5)
    for name, g, r in zip(("x", "w_gate", "w_up", "w_down", "b_gate", "b_down"), grads, grads_ref):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5, err_msg=f"ep={ep}: d/d{name}")
    assert int(stats.dropped) == 0 and int(np.sum(stats.device_load)) == T * K
    if ep == "llep":  # each replica planned on its own tokens
        flat = np.asarray(ids).reshape(DATA, -1)
        for r in range(DATA):
            counts = jnp.asarray(np.bincount(flat[r], minlength=E), jnp.int32)
            np.testing.assert_array_equal(
                stats.device_load[r * EXPERT : (r + 1) * EXPERT], plan_llep_device(counts, EXPERT, 2, 4).device_load
            )
    found = collectives(fn.lower(x, *weights, ids, cw).compile().as_text())
    assert any(c.op == "all-to-all" for c in found)
    for c in found:
        if c.op in ("all-gather", "all-to-all", "collective-permute"):
            # Token traffic stays inside an expert group of 4: nothing crosses the data axis.
            assert c.group_size in (EXPERT, None), c
        if c.group_size not in (EXPERT, None) and c.bytes > 8:  # besides the int32 stats scalars,
            assert c.op == "all-reduce" and "transpose" in c.op_name, c  # only weight grads cross data


def test_replica_plans_need_the_device_planner(mesh):
    (x, ids, cw), (wg, wu, wd, _, _) = _problem(mesh)
    with pytest.raises(ValueError, match="planner='device'"):
        routed_experts(x, ids, cw, wg, wu, wd, ep="llep", mesh=mesh, config=EPConfig(planner="host"))
    with pytest.raises(ValueError, match="tokens"):
        routed_experts(x[:12], ids[:12], cw[:12], wg, wu, wd, ep="standard", mesh=mesh)
    with pytest.raises(ValueError, match="EPConfig.batch_axes"):
        EPConfig(batch_axes=("data", "expert"))
