"""Memory report, modelled FLOPs and the per-step speed records the trainer logs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlab.models import init_model, tiny_config
from jaxlab.train import data, perf
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import TrainState, make_train_step, split_model
from jaxlab.train.trainer import TrainConfig, fit


@pytest.mark.parametrize("tied", [False, True])
def test_modelled_flops_match_xla_cost_analysis(tied):
    """Forward FLOPs (a third of the modelled train FLOPs) against XLA's count of the compiled forward."""
    cfg = tiny_config(
        "llama", hidden_size=128, intermediate_size=512, num_layers=2, vocab_size=512, tie_embeddings=tied
    )
    graphdef, params, rest = nnx.split(init_model(cfg), nnx.Param, ...)
    ids = jnp.zeros((2, 64), jnp.int32)
    xla = jax.jit(lambda p, i: nnx.merge(graphdef, p, rest)(i)).lower(params, ids).compile().cost_analysis()["flops"]
    modelled = perf.train_flops_per_token(cfg, 64) / 3 * ids.size
    assert abs(modelled - xla) / xla < 0.03, (modelled, xla)  # the rest are norms, softmax, activations


def test_memory_report_counts_the_compiled_step():
    cfg = tiny_config("llama", num_layers=2)
    graphdef, params, rest = split_model(init_model(cfg))
    tx = make_optimizer(OptimConfig())
    state = TrainState(params, tx.init(params))
    batch = {k: jnp.zeros((4, 64), jnp.int32) for k in ("input_ids", "targets", "loss_mask")}
    report = perf.memory_report(make_train_step(graphdef, tx).jitted.lower(state, rest, batch).compile())
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    assert report["argument_bytes"] >= state_bytes and report["temp_bytes"] > 0
    assert report["peak_bytes"] >= report["argument_bytes"] + report["temp_bytes"]
    assert "MiB per device" in perf.format_memory(report)


def test_fit_logs_step_time_tokens_and_mfu(capsys):
    files, _ = data.split_files(data.stdlib_python_files(), 0.1)
    ds = data.pretrain_dataset(files[:20], lambda t: list(t.encode()), eos_id=0, seq_len=16, batch_size=4, seed=0)
    cfg = tiny_config("llama", num_layers=1)
    result = fit(
        init_model(cfg),
        ds,
        OptimConfig(warmup_steps=1, decay_steps=5),
        TrainConfig(steps=3, progress=False, peak_tflops_per_device=1e-3),
    )
    assert "[train] train step needs" in capsys.readouterr().out
    records = [h for h in result.history if h["split"] == "train"]
    assert len(records) == 3
    for r in records:
        assert r["step_time_s"] > 0
        np.testing.assert_allclose(r["tokens_per_s"], 64 / r["step_time_s"], rtol=1e-9)
        want = perf.train_flops_per_token(cfg, 16) * 64 / r["step_time_s"] / (1e9 * len(jax.devices()))
        np.testing.assert_allclose(r["mfu"], want, rtol=1e-9)


def test_peak_rss_grows_with_a_large_allocation():
    import numpy as np

    from jaxlab.train.perf import format_peak_rss, peak_rss_bytes

    before = peak_rss_bytes()
    block = np.ones(int(before // 8) + (300 << 20) // 8)  # past the current peak by 300 MB, touched
    assert peak_rss_bytes() >= before + (250 << 20)
    assert block.sum() > 0 and "GB (getrusage maxrss" in format_peak_rss()
