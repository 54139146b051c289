"""Checkpoint exactness, corrupt/partial detection, failing saves, metrics on resume."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlab.models import init_model, tiny_config
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer, CheckpointError
from jaxlab.train.metrics import MetricsWriter, plot_loss_curve, read_jsonl
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import TrainState, make_train_step, split_model


@pytest.fixture(scope="module")
def trained():
    """A tiny model after two AdamW steps (non-trivial moments and count)."""
    graphdef, params, rest = split_model(init_model(tiny_config("llama", num_layers=1), seed=3))
    tx = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=1, decay_steps=10))
    state = TrainState(params, tx.init(params))
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, 256, size=(2, 17)), jnp.int32)
    batch = {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": jnp.ones((2, 16), jnp.int32)}
    step = make_train_step(graphdef, tx)
    for _ in range(2):
        state, _ = step(state, rest, batch)
    fresh = TrainState(params, tx.init(params))
    return state, rest, fresh


def _assert_same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _ckpt(path, **kw):
    return Checkpointer(path, CheckpointConfig(**{"every_steps": 1, "keep": 3, **kw}))


@pytest.mark.parametrize("async_save", [True, False])
def test_save_restore_is_exact(tmp_path, trained, async_save):
    state, rest, fresh = trained
    data_state = {"parent_state": {"next_index": 7}, "remainder_slices": {"tokens": [3, 40]}}
    with _ckpt(tmp_path, async_save=async_save) as ck:
        ck.save(2, state, rest, data_state=data_state, extra={"note": "x"})
    ck = _ckpt(tmp_path)
    out = ck.restore(fresh, rest)  # restore into an untrained state of the same structure
    assert out.step == 2 and out.data_state == data_state and out.extra == {"note": "x"}
    _assert_same(out.state, state)
    _assert_same(out.rest, rest)


def test_keeps_last_k_and_save_every_n(tmp_path, trained):
    state, rest, _ = trained
    ck = Checkpointer(tmp_path, CheckpointConfig(every_steps=2, keep=2))
    for step in range(1, 8):
        if ck.should_save(step, final=step == 7):
            ck.save(step, state, rest)
    ck.wait()
    assert ck.all_steps() == [6, 7]


def test_corrupt_checkpoint_is_a_clear_error_and_earlier_one_restores(tmp_path, trained):
    state, rest, fresh = trained
    with _ckpt(tmp_path) as ck:
        ck.save(1, state, rest)
        ck.save(2, state, rest)
    for chunk in (tmp_path / "2" / "model").rglob("d/*"):
        chunk.write_bytes(b"\x00garbage")
    ck = _ckpt(tmp_path)
    with pytest.raises(CheckpointError, match=r"step 2 .* corrupt or partial.*earlier steps available: \[1\]"):
        ck.restore(fresh, rest)
    _assert_same(ck.restore(fresh, rest, step=1).state, state)


def test_partial_checkpoint_missing_item_is_detected(tmp_path, trained):
    state, rest, fresh = trained
    with _ckpt(tmp_path) as ck:
        ck.save(1, state, rest)
    shutil.rmtree(tmp_path / "1" / "opt_state")
    with pytest.raises(CheckpointError, match="step 1 .* corrupt or partial.*no earlier checkpoint"):
        _ckpt(tmp_path).restore(fresh, rest)


def test_silently_wrong_values_fail_the_fingerprint(tmp_path, trained):
    state, rest, fresh = trained
    with _ckpt(tmp_path) as ck:
        ck.save(1, state, rest)
    # overwrite the model item with readable but different arrays (bit rot that still decodes)
    tampered = {"params": jax.tree.map(lambda x: x + 1, state.params), "rest": rest}
    with ocp.StandardCheckpointer() as writer:
        writer.save(tmp_path / "1" / "model", tampered, force=True)
    with pytest.raises(CheckpointError, match="do not match their saved fingerprint"):
        _ckpt(tmp_path).restore(fresh, rest)


def test_failing_save_never_removes_last_good(tmp_path, trained):
    state, rest, fresh = trained
    ck = _ckpt(tmp_path, keep=1)
    ck.save(1, state, rest, data_state={"i": 1})
    ck.wait()
    with pytest.raises(CheckpointError, match="earlier checkpoints are untouched"):
        ck.save(2, state, rest, data_state={"i": object()})  # not JSON: the write fails
        ck.wait()
    nan_state = TrainState(jax.tree.map(lambda x: x * jnp.nan, state.params), state.opt_state)
    with pytest.raises(CheckpointError, match="refusing to save step 3: .*NaN"):
        ck.save(3, nan_state, rest)
    reopened = _ckpt(tmp_path, keep=1)
    assert reopened.all_steps() == [1]
    out = reopened.restore(fresh, rest)
    assert out.step == 1 and out.data_state == {"i": 1}
    _assert_same(out.state, state)


def test_metrics_resume_drops_steps_after_checkpoint(tmp_path):
    with MetricsWriter(tmp_path) as mw:
        for step in range(1, 6):
            mw.write(step, "train", {"loss": 5.0 - step, "lr": np.float32(0.1)})
        mw.write(4, "eval", {"loss": 2.5})
    with MetricsWriter(tmp_path, resume_step=3) as mw:  # killed after step 5, checkpoint at 3
        mw.write(4, "train", {"loss": 0.5})
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"], r["loss"]) for r in records] == [
        (1, "train", 4.0),
        (2, "train", 3.0),
        (3, "train", 2.0),
        (4, "train", 0.5),
    ]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    png = plot_loss_curve(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(records)


def test_metrics_fresh_run_keeps_the_old_records_aside(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as mw:
        mw.write(1, "train", {"loss": 3.0})
    with MetricsWriter(tmp_path, tensorboard=False) as mw:  # a new run in the same folder, no checkpoint
        mw.write(1, "train", {"loss": 7.0})
    assert [r["loss"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [7.0]
    assert [r["loss"] for r in read_jsonl(tmp_path / "metrics.prev.jsonl")] == [3.0]


def test_failed_async_save_is_an_error_within_seconds_and_the_process_exits(tmp_path):
    """A step directory that cannot be created (disk full) once left orbax's writer threads waiting
    300 s for a "directory created" signal: the error came back, but the process hung for 5 minutes."""
    script = Path(__file__).with_name("failing_save.py")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "ck")], capture_output=True, text=True, env=env, timeout=90
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a failed async save kept the process alive: {(exc.stdout or b'')[-2000:]!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NO ERROR" not in proc.stdout
    assert re.search(
        r"RAISED saving checkpoint step 2 .*No space left on device.*earlier checkpoints are untouched, "
        r"latest complete step: 1",
        proc.stdout,
    ), proc.stdout
    assert "EXIT steps=[1]" in proc.stdout


def test_background_save_failure_stops_the_run_at_the_next_step(tmp_path, trained, monkeypatch):
    from orbax.checkpoint._src.path import atomicity

    state, rest, _ = trained
    ck = _ckpt(tmp_path, every_steps=50, async_save=True)
    ck.save(1, state, rest)
    ck.wait()

    async def io_error(self):
        raise OSError(errno.EIO, "Input/output error", str(self.get()))

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", io_error)
    ck.save(2, state, rest)  # returns at once; the commit fails in the background
    deadline = time.monotonic() + 20
    with pytest.raises(CheckpointError, match=r"pending async save .*Input/output error.*latest complete step: 1"):
        while time.monotonic() < deadline:  # the training loop asks every step, and step 3 is not a save step
            assert not ck.should_save(3)
            time.sleep(0.05)
    monkeypatch.undo()
    ck.close()
    assert _ckpt(tmp_path).all_steps() == [1]


def test_tampered_data_position_fails_the_meta_fingerprint(tmp_path, trained):
    state, rest, fresh = trained
    with _ckpt(tmp_path) as ck:
        ck.save(1, state, rest, data_state={"parent_state": {"next_index": 7}}, extra={"note": "x"})
        ck.save(2, state, rest, data_state={"parent_state": {"next_index": 14}}, extra={"note": "x"})
    meta_file = tmp_path / "2" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["data_state"]["parent_state"]["next_index"] = 3  # would silently replay 11 batches
    meta_file.write_text(json.dumps(meta))
    ck = _ckpt(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"step 2 .*meta item \(step, data-iterator position.*does not match its "
        r"saved fingerprint.*earlier steps available: \[1\]",
    ):
        ck.restore(fresh, rest)
    assert ck.restore(fresh, rest, step=1).data_state == {"parent_state": {"next_index": 7}}


def test_existing_steps_are_never_skipped_or_trained_past(tmp_path, trained):
    state, rest, _ = trained
    with _ckpt(tmp_path) as ck:
        ck.save(3, state, rest)
    assert _ckpt(tmp_path, resume=True).resume_step() == 3
    with pytest.raises(CheckpointError, match=r"checkpoint.resume is false but .* holds checkpoints \[3\]"):
        _ckpt(tmp_path, resume=False).resume_step()
    ck = _ckpt(tmp_path)
    with pytest.raises(CheckpointError, match="step 3 already exists"):  # was: silently not saved
        ck.save(3, state, rest)
    ck.close()
    assert _ckpt(tmp_path / "empty", resume=False).resume_step() is None
