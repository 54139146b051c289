"""Sharded runs checkpoint, resume bit-identically, and restore onto another mesh shape (8 fake devices)."""

from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding

from jaxlab import cli
from jaxlab.models import init_model, tiny_config
from jaxlab.sharding import MeshConfig, init_on_mesh, make_mesh, shard_state
from jaxlab.train import data
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.metrics import read_jsonl
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import TrainState, split_model
from jaxlab.train.trainer import TrainConfig, fit

OPTIM = OptimConfig(learning_rate=3e-3, warmup_steps=1, decay_steps=6)
TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain_tiny.yaml"


def _dataset():
    files, _ = data.split_files(data.stdlib_python_files(), 0.1)
    return data.pretrain_dataset(files[:40], lambda t: list(t.encode()), eos_id=0, seq_len=16, batch_size=8, seed=0)


def _fit(steps: int, mesh, ckpt_dir: Path | None):
    ckpt = Checkpointer(ckpt_dir, CheckpointConfig(every_steps=3, keep=2)) if ckpt_dir else None
    try:
        return fit(
            init_model(tiny_config("llama", num_layers=1), seed=0),
            _dataset(),
            OPTIM,
            TrainConfig(steps=steps, progress=False),
            checkpointer=ckpt,
            mesh=mesh,
        )
    finally:
        if ckpt is not None:
            ckpt.close()


def _on_mesh(tree, mesh) -> None:
    for leaf in jax.tree.leaves(tree):
        assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.mesh == mesh, leaf.sharding


def test_sharded_run_resumes_bit_identically(tmp_path):
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    first = _fit(3, mesh, tmp_path / "ck")
    _on_mesh(first.state, mesh)  # the optimizer's count and moments too, not only the params
    resumed = _fit(6, mesh, tmp_path / "ck")
    straight = _fit(6, mesh, None)
    assert resumed.resumed_from == 3
    got = [h["loss"] for h in first.history + resumed.history if h["split"] == "train"]
    want = [h["loss"] for h in straight.history if h["split"] == "train"]
    assert len(want) == 6 and got == want
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _state_on(mesh, seed: int) -> tuple[TrainState, object]:
    _, params, rest = split_model(init_model(tiny_config("llama", num_layers=1), seed=seed))
    params = shard_state(params, mesh)
    return TrainState(params, init_on_mesh(make_optimizer(OPTIM).init, params, mesh=mesh)), shard_state(rest, mesh)


def test_restore_onto_a_different_mesh_shape(tmp_path):
    src_mesh, dst_mesh = make_mesh(MeshConfig(data=1, fsdp=8)), make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    state, rest = _state_on(src_mesh, seed=1)
    # non-trivial optimizer state: moments and count that differ from a fresh init
    grads = jax.tree.map(lambda p: p * 0.5 + 0.01, state.params)
    updates, opt_state = make_optimizer(OPTIM).update(grads, state.opt_state, state.params)
    state = TrainState(jax.tree.map(lambda p, u: p + u, state.params, updates), opt_state)
    with Checkpointer(tmp_path, CheckpointConfig(every_steps=1)) as ck:
        ck.save(1, state, rest, data_state={"pos": 3})
    target, target_rest = _state_on(dst_mesh, seed=2)
    with Checkpointer(tmp_path, CheckpointConfig(every_steps=1)) as ck:
        out = ck.restore(target, target_rest)
    _on_mesh(out.state, dst_mesh)
    kernel = out.state.params["layers"][0]["mlp"]["up_proj"]["kernel"][...]
    assert kernel.sharding.spec == target.params["layers"][0]["mlp"]["up_proj"]["kernel"][...].sharding.spec
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    saved, restored = jax.tree.leaves(state), jax.tree.leaves(out.state)
    assert len(saved) == len(restored) > 10
    for a, b in zip(saved, restored):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert out.data_state == {"pos": 3}


def _cli(out: Path, *overrides: str) -> list[float]:
    base = [f"output_dir={out}", "train.progress=false", "data.eval_batches=1", "checkpoint.every_steps=3"]
    assert cli.main(["run", str(TINY_CONFIG), *base, *overrides]) == 0
    return [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]


@pytest.mark.slow
def test_cli_mesh_run_resumes_and_reshards(tmp_path):
    mesh = ["mesh.data=2", "mesh.fsdp=4"]
    _cli(tmp_path / "a", *mesh, "train.steps=3")
    resumed = _cli(tmp_path / "a", *mesh, "train.steps=6")
    straight = _cli(tmp_path / "b", *mesh, "train.steps=6")
    assert len(straight) == 6 and resumed == straight
    # the same run continued on another mesh shape: orbax reshards the checkpoint onto it
    longer = _cli(tmp_path / "a", "mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2", "train.steps=8")
    assert longer[:6] == straight and len(longer) == 8 and all(np.isfinite(longer))
