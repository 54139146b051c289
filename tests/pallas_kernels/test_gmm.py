"""gmm/tgmm kernel paths (Pallas interpret mode on CPU) against the jnp reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import Tiling, gmm, gmm_reference, tgmm, tgmm_reference

SMALL_TILES = Tiling(8, 16, 16)
# (group_sizes, m): uneven groups, empty groups (first, middle, last), sizes not
# multiples of the tile, and rows past sum(group_sizes) that must come out zero.
GROUPINGS = [([7, 0, 13, 3, 20], 50), ([0, 21, 0, 0, 11, 0], 32)]
PATHS = [("pallas_tpu", True), ("triton", True), ("ragged_dot", False)]
TOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}


def _inputs(group_sizes, m, k=40, n=24, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    g = len(group_sizes)
    lhs = jnp.asarray(rng.normal(size=(m, k)), dtype)
    rhs = jnp.asarray(rng.normal(size=(g, k, n)) / np.sqrt(k), dtype)
    grad = jnp.asarray(rng.normal(size=(m, n)), dtype)
    return lhs, rhs, grad, jnp.asarray(group_sizes, jnp.int32)


def _close(actual, expected, dtype):
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, atol=TOL[dtype] * scale, rtol=TOL[dtype])


@pytest.mark.parametrize("impl,interpret", PATHS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("group_sizes,m", GROUPINGS)
def test_gmm_and_tgmm_match_reference(impl, interpret, dtype, group_sizes, m):
    lhs, rhs, grad, gs = _inputs(group_sizes, m, dtype=dtype)
    out = gmm(lhs, rhs, gs, impl=impl, tiling=SMALL_TILES, interpret=interpret)
    assert out.dtype == dtype and out.shape == (m, rhs.shape[2])
    _close(out, gmm_reference(lhs, rhs, gs), dtype)
    total = sum(group_sizes)
    assert np.all(np.asarray(out[total:], np.float32) == 0.0)

    w_grad = tgmm(lhs, grad, gs, impl=impl, tiling=SMALL_TILES, interpret=interpret)
    assert w_grad.shape == rhs.shape
    _close(w_grad, tgmm_reference(lhs, grad, gs), dtype)
    for i, size in enumerate(group_sizes):
        if size == 0:
            assert np.all(np.asarray(w_grad[i], np.float32) == 0.0)


@pytest.mark.parametrize("impl,interpret", [("pallas_tpu", True), ("ragged_dot", False)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gmm_gradients_match_reference_autodiff(impl, interpret, dtype):
    group_sizes, m = GROUPINGS[0]
    lhs, rhs, cot, gs = _inputs(group_sizes, m, dtype=dtype, seed=1)

    def loss(fn):
        def f(lhs, rhs):
            return jnp.sum(fn(lhs, rhs).astype(jnp.float32) * cot.astype(jnp.float32))

        return jax.jit(jax.grad(f, argnums=(0, 1)))

    got = loss(lambda a, b: gmm(a, b, gs, impl=impl, tiling=SMALL_TILES, interpret=interpret))(lhs, rhs)
    want = loss(lambda a, b: gmm_reference(a, b, gs))(lhs, rhs)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        _close(g, w, dtype)
    # Rows past the groups get no gradient.
    assert np.all(np.asarray(got[0][sum(group_sizes) :], np.float32) == 0.0)


def test_default_tiles_larger_than_shapes():
    lhs, rhs, _, gs = _inputs([5, 0, 9], 16, k=12, n=20, seed=2)
    out = gmm(lhs, rhs, gs, impl="pallas_tpu", interpret=True)
    _close(out, gmm_reference(lhs, rhs, gs), jnp.float32)


def test_reference_path_and_auto_agree_on_cpu():
    lhs, rhs, _, gs = _inputs([3, 4, 0, 6], 16, seed=3)
    np.testing.assert_allclose(gmm(lhs, rhs, gs), gmm(lhs, rhs, gs, impl="reference"))


def test_bad_arguments_name_the_problem():
    lhs, rhs, grad, gs = _inputs([3, 4], 8)
    with pytest.raises(ValueError, match="impl must be one of"):
        gmm(lhs, rhs, gs, impl="cuda")
    with pytest.raises(ValueError, match="group_sizes has 3 groups"):
        gmm(lhs, rhs, jnp.array([1, 2, 3], jnp.int32))
    with pytest.raises(ValueError, match="contracted dim"):
        gmm(lhs[:, :5], rhs, gs)
    with pytest.raises(ValueError, match="integer"):
        tgmm(lhs, grad, gs.astype(jnp.float32))
    with pytest.raises(ValueError, match="tiling.tm"):
        gmm(lhs, rhs, gs, tiling=(0, 8, 8))
