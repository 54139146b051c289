"""PTL's lean memory (issue 15): evaluation in row chunks gives the unchunked numbers with smaller
temporaries; a donating tuner gives the same rows as a copying one and leaves the base model (every
track's start and the distillation teacher) intact across tracks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.ptl import evaluate
from experiments.ptl.loop import run_track
from experiments.ptl.schedule import ScheduleConfig
from experiments.ptl.tune import Budget, TrainerTuner, TuneConfig
from jaxlab.models import init_model, tiny_config
from jaxlab.train import data as train_data
from jaxlab.train.step import split_model
from jaxlab.transforms import full_masks


def _windows(rows: int, seq: int, vocab: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (rows, seq + 1)).astype(np.int32)
    mask = (rng.random((rows, seq)) > 0.2).astype(np.int32)
    mask[1] = 0  # a row without tokens
    return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": mask}


def _reference_rows(split, batch) -> tuple[np.ndarray, np.ndarray]:
    """Row sums the plain way: one forward over the whole batch, numpy log-softmax."""
    graphdef, params, rest = split
    logits = np.asarray(nnx.merge(graphdef, params, rest)(jnp.asarray(batch["input_ids"])), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0] * batch["loss_mask"]
    return nll.sum(1), batch["loss_mask"].sum(1).astype(np.float64)


def test_chunked_window_nll_equals_the_whole_batch_forward():
    cfg = tiny_config("llama", vocab_size=300)
    split = split_model(init_model(cfg, 0))
    batches = [_windows(6, 12, cfg.vocab_size, s) for s in range(2)]
    want_s, want_n = map(np.concatenate, zip(*(_reference_rows(split, b) for b in batches)))
    keep = want_n > 0
    for chunk in (4, 6):  # 4 leaves a padded last chunk of 6 rows; 6: the whole batch at once
        s, n = evaluate.window_nll(split, batches, chunk_rows=chunk)
        np.testing.assert_array_equal(n, want_n[keep])
        np.testing.assert_allclose(s, want_s[keep], rtol=2e-5)


def test_chunked_next_line_scores_equal_the_whole_batch_forward():
    cfg = tiny_config("llama", vocab_size=300)
    graphdef, params, rest = split = split_model(init_model(cfg, 1))
    b = _windows(7, 10, cfg.vocab_size, 3)
    ids = np.concatenate([b["input_ids"], b["targets"][:, -1:]], axis=1)
    mask = np.concatenate([np.zeros((7, 1), np.int32), b["loss_mask"]], axis=1).astype(np.float32)
    want_s, want_n = _reference_rows(split, {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": mask[:, 1:]})
    for chunk in (3, 7):
        s, n = evaluate._row_nll(graphdef, params, rest, jnp.asarray(ids), jnp.asarray(mask), chunk)
        np.testing.assert_array_equal(np.asarray(n), want_n)
        np.testing.assert_allclose(np.asarray(s), want_s, rtol=2e-5)


def test_chunks_shrink_the_evaluation_temporaries():
    """The point of chunking: the compiled program holds a 4-row slice of the logits, not 16 rows."""
    cfg = tiny_config("llama", vocab_size=8192)
    graphdef, params, rest = split_model(init_model(cfg, 0))
    batch = {k: jax.ShapeDtypeStruct((16, 64), jnp.int32) for k in ("input_ids", "targets", "loss_mask")}

    def temp(chunk):
        lowered = evaluate._batch_nll.lower(graphdef, params, rest, batch, chunk)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    logits_16_rows = 16 * 64 * cfg.vocab_size * 4
    assert temp(16) > logits_16_rows  # unchunked: at least the full logits
    assert temp(evaluate.EVAL_CHUNK_ROWS) < 0.5 * logits_16_rows


def _stream():
    files, _ = train_data.split_files(train_data.stdlib_python_files(), 0.1)
    return iter(
        train_data.pretrain_dataset(files[:20], lambda t: list(t.encode()), eos_id=0, seq_len=16, batch_size=2, seed=0)
    )


class _Recording(TrainerTuner):
    """Keeps the models the loop hands over, to check afterwards whether their buffers were donated."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handed = []

    def __call__(self, model, stage, budget):
        self.handed.append(model)
        return super().__call__(model, stage, budget)


def _tracks(base, donate: bool, tmp_path) -> tuple[list[dict], list]:
    """The runner's order: PTL (2 stages), then one-shot, both from ``base``, each with its own tuner."""
    cfg = base.config
    calib_rng = np.random.default_rng(3)
    calib = [
        {
            "input_ids": calib_rng.integers(1, cfg.vocab_size, (2, 16)).astype(np.int32),
            "targets": calib_rng.integers(1, cfg.vocab_size, (2, 16)).astype(np.int32),
            "loss_mask": np.ones((2, 16), np.int32),
        }
    ]
    held = [_windows(4, 16, cfg.vocab_size, 9)]

    def eval_fn(split):
        s, n = evaluate.window_nll(split, held)
        return {"code_ppl": float(np.exp(s.sum() / n.sum())), "text_ppl": 0.0, "accuracy": 0.0}

    rows, handed = [], []
    for track, kept in (("ptl", [96, 64]), ("one_shot", [64])):
        tuner = _Recording(
            _stream(), TuneConfig(steps=2, learning_rate=1e-2), progress=False, teacher=base, donate=donate
        )
        result = run_track(
            track,
            base,
            full_masks(cfg),
            kept,
            ScheduleConfig(stages=len(kept), target=0.5),
            tuner=tuner,
            budget=Budget(2, 64, 1e-2),
            calib=calib,
            english=calib,
            eval_fn=eval_fn,
            ckpt_dir=tmp_path / f"{donate}" / track,
            progress=False,
            log=lambda s: None,
        )
        rows += result.rows
        handed += tuner.handed
        for r in result.rows:
            r["tune_losses"] = [loss for _, loss in r.get("tune_losses", [])]
    return rows, handed


@pytest.mark.slow  # four tuned tracks: about 15 s alone, a minute on the shared CPU
def test_donating_tuner_gives_equal_rows_and_leaves_the_base_model_intact_across_tracks(tmp_path):
    cfg = tiny_config("llama", intermediate_size=128)
    base = init_model(cfg, 0)
    before = [np.array(x) for x in jax.tree.leaves(nnx.state(base))]
    copied, kept_models = _tracks(base, donate=False, tmp_path=tmp_path)
    donated, given_models = _tracks(base, donate=True, tmp_path=tmp_path)
    params = lambda m: jax.tree.leaves(nnx.state(m, nnx.Param))  # noqa: E731
    assert len(given_models) == 3 and all(x.is_deleted() for m in given_models for x in params(m))  # donated
    assert not any(x.is_deleted() for m in kept_models for x in params(m))
    assert [(r["track"], r["stage"]) for r in donated] == [("ptl", 1), ("ptl", 2), ("one_shot", 1)]
    for a, b in zip(copied, donated):
        assert a["tune_losses"] == b["tune_losses"] and len(b["tune_losses"]) == 2
        assert a["code_ppl"] == b["code_ppl"]
    after = jax.tree.leaves(nnx.state(base))
    assert not any(x.is_deleted() for x in after)  # the embeddings and norms are not masked: shared until copied
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, np.asarray(b))
