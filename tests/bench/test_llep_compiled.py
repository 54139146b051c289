"""The LLEP bench's extraction: memory and collective bytes from compiled programs, and the per-device share."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from experiments.llep import compiled as xla
from experiments.llep.cost_model import Link, collective_seconds, wire_bytes
from experiments.llep.share import capture_body, device_shards, local_program, share_inputs
from jaxlab.parallel import EPConfig, ExpertPlan, plan_standard, routed_experts
from jaxlab.parallel.device_planner import plan_llep_device
from jaxlab.parallel.dispatch import positions_by_destination, route_planned

D = 8


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:D]), ("expert",))


def test_memory_reads_argument_and_output_bytes_of_the_compiled_program():
    x = jnp.ones((256, 128), jnp.float32)
    compiled = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x).lower(x).compile()
    mem = xla.memory(compiled)
    assert mem["argument"] == 256 * 128 * 4 and mem["output"] == 256 * 128 * 4
    assert mem["temp"] >= 256 * 256 * 4  # the [256, 256] intermediate lives in temp
    assert mem["peak"] == mem["argument"] + mem["output"] + mem["temp"] - mem["alias"]


def _looped_program(mesh):
    """An all_to_all of [D, 4, 16] f32 once, an all-reduce of [32] f32 ``n`` times in a loop."""

    def body(x, n):
        y = jax.lax.all_to_all(x.reshape(D, 4, 16), "expert", 0, 0)

        def step(i, acc):
            with jax.named_scope("my_loop"):
                return acc + jax.lax.psum(acc, "expert")

        acc = jax.lax.fori_loop(0, n[0], step, y.reshape(-1)[:32])
        return y.reshape(-1, 16), acc

    fn = jax.shard_map(body, mesh=mesh, in_specs=(P("expert"), P()), out_specs=(P("expert"), P("expert")))
    args = (jnp.ones((D * D * 4, 16), jnp.float32), jnp.array([3], jnp.int32))
    return jax.jit(fn).lower(*args).compile().as_text()


def test_traffic_counts_bytes_per_device_and_loop_trips(mesh):
    hlo = _looped_program(mesh)
    rows = xla.traffic(hlo, {"my_loop": 3}, D)
    by_op = {r["op"]: r for r in rows}
    assert by_op["all-to-all"]["bytes"] == D * 4 * 16 * 4 and by_op["all-to-all"]["calls"] == 1
    assert by_op["all-reduce"]["bytes"] == 32 * 4 and by_op["all-reduce"]["calls"] == 3
    assert by_op["all-reduce"]["wire_bytes"] == pytest.approx(2 * (D - 1) / D * 128)
    assert xla.total_wire_bytes(rows) == pytest.approx((D - 1) / D * D * 256 + 3 * 2 * (D - 1) / D * 128)
    with pytest.raises(ValueError, match="no known trip count"):
        xla.traffic(hlo, {}, D)


def test_link_model_charges_latency_and_bandwidth_per_call():
    rows = [{"calls": 2, "wire_bytes": 1000.0}, {"calls": 1, "wire_bytes": 0.0}]
    assert collective_seconds(rows, Link(1e6, 1e-3)) == pytest.approx(2 * (1e-3 + 1e-3) + 1e-3)
    assert wire_bytes("collective-permute", 10, 4) == 10 and wire_bytes("all-gather", 8, 1) == 0
    with pytest.raises(ValueError, match="unknown collective"):
        wire_bytes("send", 1, 2)


E, T, K, DM, F = 16, 128, 2, 16, 16


def _layer(ids):
    rng = np.random.default_rng(0)
    x, cw = rng.normal(size=(T, DM)), rng.random((T, K))
    wg, wu, wd = (rng.normal(size=s) / 4 for s in ((E, DM, F), (E, DM, F), (E, F, DM)))
    x, cw, wg, wu, wd = (jnp.asarray(a, jnp.float32) for a in (x, cw, wg, wu, wd))
    return x, jnp.asarray(ids, jnp.int32), cw, wg, wu, wd


def test_share_inputs_equal_what_the_real_collectives_gather(mesh):
    rng = np.random.default_rng(1)
    ids = np.where(rng.random((T, K)) < 0.6, 3, rng.integers(0, E, (T, K))).astype(np.int32)
    counts = np.bincount(ids.ravel(), minlength=E)
    device_plan = plan_llep_device(jnp.asarray(counts), D, 2, 4)
    plan = device_plan.arrays()

    def body(flat_ids, *plan):
        local = jnp.bincount(flat_ids, length=E)
        routed = route_planned(flat_ids, E, *plan[:3], "expert")
        _, _, sizes = positions_by_destination(routed.dest, D)
        return jax.lax.all_gather(local, "expert"), jax.lax.all_gather(sizes, "expert")

    fn = jax.shard_map(body, mesh=mesh, in_specs=(P("expert"),) + (P(),) * 4, out_specs=(P(), P()), check_vma=False)
    by_source, matrix = jax.jit(fn)(jnp.asarray(ids.reshape(-1)), *plan)
    got = share_inputs(ids, ExpertPlan(*(np.asarray(a) for a in plan), device_plan.device_load), E, D)
    np.testing.assert_array_equal(got[0], counts)
    np.testing.assert_array_equal(got[1], by_source)
    np.testing.assert_array_equal(got[2], matrix)


@pytest.mark.parametrize("ep", ["standard", "llep"])
def test_local_share_equals_the_real_program_when_no_copy_leaves_its_device(mesh, ep):
    """Tokens routed only to their own device's experts: then what each stubbed collective
    returns is exactly what the real one would, so the share reproduces that device's output."""
    home = np.repeat(np.arange(D), T // D) * (E // D)  # first expert of each token's own device
    flip = np.arange(T) % 3 == 0  # both picks on the home device, in varying order
    ids = np.stack([home + flip, home + ~flip], 1).astype(np.int32)
    args = _layer(ids)
    config = EPConfig(min_chunk=4)
    y_real = jax.jit(lambda *a: routed_experts(*a, ep=ep, mesh=mesh, config=config)[0])(*args)
    body, global_args = capture_body(ep, mesh, config, args)
    local = local_program(body, E, D)
    counts = np.bincount(ids.ravel(), minlength=E)
    device_plan = plan_llep_device(jnp.asarray(counts), D, config.max_extra_experts, 4)
    plan = (
        plan_standard(counts, D)
        if ep == "standard"
        else ExpertPlan(*(np.asarray(a) for a in device_plan.arrays()), device_plan.device_load)
    )
    inputs = share_inputs(ids, plan, E, D)
    for device in (0, 5):
        y_local = local(device_shards(global_args, device, D), jnp.int32(device), *inputs)[0]
        rows = slice(device * T // D, (device + 1) * T // D)
        np.testing.assert_allclose(y_local, y_real[rows], atol=1e-5, rtol=1e-5)
