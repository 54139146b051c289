"""The same forward on 8 fake CPU devices, over several mesh shapes, equals the single-device one."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxlab.models import init_model, tiny_config
from jaxlab.sharding import MeshConfig, activation_sharding, batch_sharding, logical_to_spec, make_mesh, shard_state


def _forward(graphdef, state, ids):
    return nnx.merge(graphdef, state)(ids)


@pytest.fixture(scope="module")
def setup():
    model = init_model(tiny_config("qwen2", vocab_size=256, hidden_size=64, intermediate_size=128), seed=1)
    ids = jax.random.randint(jax.random.key(0), (8, 12), 0, 256)
    return model, ids, np.asarray(model(ids))


@pytest.mark.parametrize(
    "shape",
    [dict(data=8), dict(data=-1, fsdp=2, tensor=4), dict(data=2, fsdp=2, tensor=2), dict(data=1, tensor=8)],
    ids=["dp8", "fsdp2-tp4", "dp2-fsdp2-tp2", "tp8"],
)
def test_sharded_forward_equals_single_device(setup, shape):
    assert len(jax.devices()) == 8
    model, ids, ref = setup
    mesh = make_mesh(MeshConfig(**shape))
    graphdef, state = nnx.split(model)
    state = shard_state(state, mesh)
    ids = jax.device_put(ids, batch_sharding(mesh, batch_size=ids.shape[0]))
    with activation_sharding(mesh):
        out = jax.jit(_forward, static_argnums=0)(graphdef, state, ids)
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5, rtol=0)
    kernel = state["layers"][0]["mlp"]["up_proj"]["kernel"]
    expected = logical_to_spec(("embed", "mlp"), kernel.shape, mesh)
    assert kernel[...].sharding.spec == expected


def test_rules_map_logical_axes_and_skip_undivisible_dims():
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    assert logical_to_spec(("embed", "mlp"), (64, 128), mesh) == P("fsdp", "tensor")
    assert logical_to_spec(("embed", "mlp"), (63, 128), mesh) == P(None, "tensor")
    assert logical_to_spec(("batch", None), (8, 3), mesh) == P(("data", "fsdp"), None)


def test_bad_mesh_is_named():
    with pytest.raises(ValueError, match="needs 16 devices"):
        make_mesh(MeshConfig(data=4, tensor=4))
    with pytest.raises(ValueError, match="mesh.tensor"):
        MeshConfig(tensor=0)
    with pytest.raises(ValueError, match="unknown logical axis 'mpl'"):
        MeshConfig(rules={"mpl": "tensor"})
