"""Standard EP and LLEP with the accelerator gmm kernels (Pallas interpret mode) inside shard_map.

The EP tests elsewhere use the jnp reference gmm; these run the Pallas TPU
(Mosaic) and Triton kernels themselves inside the expert shard_map, which is
where ``check_vma`` used to reject them, and compare outputs and gradients with
the single-device reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxlab.parallel import EPConfig, routed_experts

D, T, K, DM, F, E = 8, 32, 2, 8, 16, 16


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    probs = np.ones(E)
    probs[5] = 40.0  # a hot expert, so LLEP really splits it and copies its weights
    probs /= probs.sum()
    ids = np.stack([rng.choice(E, size=K, replace=False, p=probs) for _ in range(T)])
    arrays = (
        rng.normal(size=(T, DM)),
        rng.random(size=(T, K)),
        rng.normal(size=(E, DM, F)) / 3,
        rng.normal(size=(E, DM, F)) / 3,
        rng.normal(size=(E, F, DM)) / 4,
    )
    x, cw, wg, wu, wd = (jnp.asarray(a, jnp.float32) for a in arrays)
    return x, jnp.asarray(ids, jnp.int32), cw, wg, wu, wd


def _value_and_grads(problem, ep, mesh, config):
    x, ids, cw, wg, wu, wd = problem

    def loss(x, wg, wu, wd):
        y, stats = routed_experts(x, ids, cw, wg, wu, wd, ep=ep, mesh=mesh, config=config)
        return jnp.sum(jnp.sin(y) * y), (y, stats.dropped)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(x, wg, wu, wd)


@pytest.mark.parametrize("impl", ["pallas_tpu", "triton"])
@pytest.mark.parametrize("ep", ["standard", "llep"])
def test_kernel_inside_expert_shard_map_matches_reference(problem, mesh, impl, ep):
    (_, (y_ref, _)), grads_ref = _value_and_grads(problem, "none", None, EPConfig(gmm_impl="reference"))
    config = EPConfig(gmm_impl=impl, gmm_interpret=True, max_extra_experts=2, min_chunk=2)
    (_, (y, dropped)), grads = _value_and_grads(problem, ep, mesh, config)
    assert int(dropped) == 0
    np.testing.assert_allclose(y, y_ref, atol=2e-5, rtol=2e-5)
    for name, g, g_ref in zip(("x", "w_gate", "w_up", "w_down"), grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=2e-5, rtol=2e-5, err_msg=f"d/d{name}")
