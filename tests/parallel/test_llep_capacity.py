"""LLEP's plan-bounded buffers: the experts run on capacity() rows per device, overflow is counted."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxlab.parallel import EPConfig, raise_on_overflow, routed_experts, routed_ffn_reference
from tests.parallel.ep_problems import hot_problem

D, T, K, DM, F, E = 8, 256, 2, 16, 256, 16


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


def _hot_problem(hot_share: float, seed: int = 0):
    return hot_problem(hot_share, seed, T, DM, F, E)


def _temp_bytes(ep, mesh, config, args) -> int:
    f = jax.jit(lambda *a: routed_experts(*a, ep=ep, mesh=mesh, config=config)[0])
    return f.lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_llep_compiled_temp_memory_is_bounded_by_the_plan(mesh):
    """No-drop standard EP must size its expert buffers for every copy landing on one device."""
    args = _hot_problem(0.9)
    config = EPConfig(max_extra_experts=2, min_chunk=8)
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="llep", mesh=mesh, config=config))(*args)
    assert int(stats.dropped) == 0
    np.testing.assert_allclose(y, routed_ffn_reference(*args), atol=1e-4, rtol=1e-4)
    standard = _temp_bytes("standard", mesh, config, args)
    llep = _temp_bytes("llep", mesh, config, args)
    assert llep < 0.5 * standard, (llep, standard)


def test_llep_overflow_when_copies_run_out_is_counted(mesh):
    args = _hot_problem(0.9, seed=1)
    y_ref = routed_ffn_reference(*args)
    drop = EPConfig(max_extra_experts=0, min_chunk=8, overflow="drop")  # the hot owner cannot shed
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="llep", mesh=mesh, config=drop))(*args)
    assert int(stats.dropped) > 0 and np.all(np.isfinite(y))
    with pytest.raises(RuntimeError, match="could not place"):
        raise_on_overflow(stats)
    strict = EPConfig(max_extra_experts=0, min_chunk=8, overflow="error")
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="llep", mesh=mesh, config=strict))(*args)
    bad = np.isnan(np.asarray(y)).any(axis=1)
    assert bad.sum() > 0 and int(stats.dropped) > 0
    np.testing.assert_allclose(y[~bad], y_ref[~bad], atol=1e-4, rtol=1e-4)
