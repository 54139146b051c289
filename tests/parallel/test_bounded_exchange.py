"""The bounded transport: LLEP's receive buffers sized by the plan on the CPU all_to_all path."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxlab.parallel import EPConfig, raise_on_overflow, routed_experts
from jaxlab.parallel.bounded_exchange import SCOPE, default_pair_rows
from jaxlab.parallel.device_planner import capacity
from jaxlab.parallel.hlo_collectives import collectives
from tests.parallel.ep_problems import hot_problem, loss_and_grads

D, T, K, DM, F, E = 8, 256, 2, 32, 32, 16


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


def _problem(hot_share: float, seed: int = 0):
    return hot_problem(hot_share, seed, T, DM, F, E)


@pytest.mark.parametrize(
    "hot_share,pair_rows", [(0.0, None), (0.9, None), (0.9, 3)], ids=["uniform", "hot90", "hot90-many-rounds"]
)
def test_bounded_llep_matches_reference_outputs_and_gradients(mesh, hot_share, pair_rows):
    args = _problem(hot_share)
    (_, (y_ref, _)), grads_ref = loss_and_grads("none", None, EPConfig(), args)
    config = EPConfig(transport="bounded", min_chunk=8, pair_rows=pair_rows)
    (_, (y, stats)), grads = loss_and_grads("llep", mesh, config, args)
    assert int(stats.dropped) == 0
    np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=1e-4, rtol=1e-4)
    assert int(np.asarray(stats.device_load).max()) <= capacity(T * K, D, 8)


def test_bounded_receive_buffers_and_round_blocks_are_plan_sized(mesh):
    """Compiled per-device temp below the worst-case all_to_all's; each round moves [D, c] rows."""
    args = _problem(0.9)
    temps = {}
    for transport in ("bounded", "all_to_all"):
        config = EPConfig(transport=transport, min_chunk=8)
        compiled = (
            jax.jit(lambda *a, c=config: routed_experts(*a, ep="llep", mesh=mesh, config=c)[0]).lower(*args).compile()
        )
        temps[transport] = compiled.memory_analysis().temp_size_in_bytes
        if transport == "bounded":
            rounds = [c for c in collectives(compiled.as_text()) if SCOPE in c.op_name]
            rows = default_pair_rows(capacity(T * K, D, 8), D)
            assert rounds and all(c.in_loop and c.op == "all-to-all" for c in rounds)
            assert max(c.bytes for c in rounds) == D * rows * DM * 4  # one round's x block, f32
    # all_to_all receives D x local copies = T*K rows per device; bounded about capacity().
    assert temps["bounded"] < 0.7 * temps["all_to_all"], temps


def test_bounded_overflow_is_counted_never_silent(mesh):
    """No weight copies allowed: the hot owner's rows past the buffer come back NaN / dropped."""
    args = _problem(0.9, seed=1)
    drop = EPConfig(transport="bounded", max_extra_experts=0, min_chunk=8, overflow="drop")
    y, stats = jax.jit(lambda *a: routed_experts(*a, ep="llep", mesh=mesh, config=drop))(*args)
    hot_rows = int(np.sum(np.asarray(args[1]) // (E // D) == 1))  # copies owned by device 1
    assert int(stats.dropped) == hot_rows - capacity(T * K, D, 8)
    assert np.all(np.isfinite(y))
    with pytest.raises(RuntimeError, match="could not place"):
        raise_on_overflow(stats)


def test_pair_rows_must_be_positive():
    with pytest.raises(ValueError, match="EPConfig.pair_rows"):
        EPConfig(pair_rows=0)
