"""gmm/tgmm inside jax.shard_map with check_vma on: kernel outputs carry varying-axis types.

Without ``pallas_kernels.vma`` the Pallas kernels fail at trace time inside
shard_map (``manual_axis_type ... must not be None``), which is what broke
``moe.ep`` on every TPU and GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import pallas_kernels

D, M, K, N, G = 4, 16, 8, 8, 3


@pytest.fixture(scope="module")
def operands():
    rng = np.random.default_rng(3)
    lhs = jnp.asarray(rng.normal(size=(D * M, K)), jnp.float32)
    rhs = jnp.asarray(rng.normal(size=(G, K, N)), jnp.float32)
    sizes = jnp.asarray([[5, 0, 9], [1, 7, 8], [16, 0, 0], [2, 3, 4]], jnp.int32)  # per shard
    return lhs, rhs, sizes


def _sharded(impl: str, check_vma: bool):
    """Rows and group sizes sharded over the axis, weights replicated: d rhs sums the shards.

    Returns (value-and-grad of a loss through gmm, tgmm of the rows with themselves).
    """
    mesh = Mesh(np.array(jax.devices()[:D]), ("x",))
    kw = dict(impl=impl, interpret=impl != "reference")

    def shard(body, out_specs):
        return jax.shard_map(body, mesh=mesh, in_specs=(P("x"), P(), P("x")), out_specs=out_specs, check_vma=check_vma)

    gmm = shard(lambda lhs, rhs, sizes: pallas_kernels.gmm(lhs, rhs, sizes[0], **kw), P("x"))

    def loss(lhs, rhs, sizes):
        out = gmm(lhs, rhs, sizes)
        return jnp.sum(jnp.sin(out) * out), out

    tgmm = shard(lambda lhs, rhs, sizes: pallas_kernels.tgmm(lhs, lhs, sizes[0], **kw)[None], P("x"))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)), jax.jit(tgmm)


@pytest.mark.parametrize("impl,check_vma", [("pallas_tpu", True), ("triton", False)])
def test_kernels_inside_shard_map_match_reference(operands, impl, check_vma):
    """The Triton kernel's CPU interpreter cannot carry varying types (JAX), so it runs unchecked."""
    loss_ref, tgmm_ref = _sharded("reference", True)
    loss, tgmm = _sharded(impl, check_vma)
    (value_ref, out_ref), grads_ref = loss_ref(*operands)
    (value, out), grads = loss(*operands)
    np.testing.assert_allclose(out, out_ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(value, value_ref, atol=1e-4, rtol=1e-5)
    for name, g, g_ref in zip(("lhs", "rhs"), grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=1e-4, rtol=1e-5, err_msg=f"d/d{name}")
    np.testing.assert_allclose(tgmm(*operands), tgmm_ref(*operands), atol=1e-4, rtol=1e-5)
