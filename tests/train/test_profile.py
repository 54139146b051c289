"""``train.profile_steps`` writes a jax.profiler trace of the chosen steps under RUN_DIR/profile."""

import numpy as np
import pytest

from jaxlab.models import init_model, tiny_config
from jaxlab.train.metrics import MetricsWriter
from jaxlab.train.optim import OptimConfig
from jaxlab.train.trainer import TrainConfig, fit


def _batches(n, b=2, s=8):
    rng = np.random.default_rng(0)
    for _ in range(n):
        ids = rng.integers(0, 256, (b, s + 1)).astype(np.int32)
        yield {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((b, s), np.int32)}


def test_profile_steps_write_a_trace(tmp_path):
    metrics = MetricsWriter(tmp_path, tensorboard=False)
    try:
        fit(
            init_model(tiny_config("llama", num_layers=1)),
            _batches(4),
            OptimConfig(),
            TrainConfig(steps=4, progress=False, profile_steps=(2, 3)),
            metrics=metrics,
        )
    finally:
        metrics.close()
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_no_profile_without_the_key(tmp_path):
    metrics = MetricsWriter(tmp_path, tensorboard=False)
    try:
        fit(
            init_model(tiny_config("llama", num_layers=1)),
            _batches(2),
            OptimConfig(),
            TrainConfig(steps=2, progress=False),
            metrics=metrics,
        )
    finally:
        metrics.close()
    assert not (tmp_path / "profile").exists()


def test_bad_profile_steps_are_named():
    with pytest.raises(ValueError, match=r"profile_steps: expected \[start, stop\]"):
        TrainConfig(profile_steps=(3, 2))
    with pytest.raises(ValueError, match="profile_steps: no directory"):
        fit(
            init_model(tiny_config("llama", num_layers=1)),
            _batches(1),
            OptimConfig(),
            TrainConfig(steps=1, progress=False, profile_steps=(1, 1)),
        )
