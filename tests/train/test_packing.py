"""Packed sequences: first-fit rows match a plain reference packer, a packed row computes the logits and loss
of its documents run alone (xla, dot_product, splash), and SFT packing keeps each conversation's loss mask."""

import json
import random

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models import init_model, tiny_config
from jaxlab.train import data
from jaxlab.train.packing import pack
from jaxlab.train.step import eval_step, split_model
from tests.train import tiny_hf


def first_fit_reference(lengths, seq_len, num_bins):
    """Example indices per row: first bin with room, all bins emitted when an example fits none."""
    bins, rows = [], []
    for i, n in enumerate(lengths):
        for b in bins:
            if sum(lengths[j] for j in b) + n <= seq_len:
                b.append(i)
                break
        else:
            if len(bins) == num_bins:
                rows, bins = rows + bins, []
            bins.append([i])
    return rows + bins


def _examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ids = rng.integers(1, 200, n + 1).astype(np.int32)
        out.append({"input_ids": ids[:-1], "targets": ids[1:], "loss_mask": rng.integers(0, 2, n).astype(np.int32)})
    return out


def test_pack_matches_first_fit_reference_and_marks_segments():
    rng = random.Random(0)
    lengths = [rng.randint(1, 16) for _ in range(60)]
    examples = _examples(lengths)
    rows = list(pack(grain.MapDataset.source(examples).to_iter_dataset(), 16, num_bins=3, shuffle=False))
    want = first_fit_reference(lengths, 16, 3)
    assert len(rows) == len(want)
    for row, members in zip(rows, want):
        assert sorted(set(row["segment_ids"].tolist()) - {0}) == list(range(1, len(members) + 1))
        for seg, i in enumerate(members, 1):
            at = row["segment_ids"] == seg
            for key in ("input_ids", "targets", "loss_mask"):
                np.testing.assert_array_equal(row[key][at], examples[i][key])
            np.testing.assert_array_equal(row["positions"][at], np.arange(lengths[i]))
        pad = row["segment_ids"] == 0
        assert not row["loss_mask"][pad].any() and pad.sum() == 16 - sum(lengths[i] for i in members)


def test_pack_refuses_an_example_longer_than_the_row():
    with pytest.raises(ValueError, match="at most seq_len=4"):
        list(pack(grain.MapDataset.source(_examples([6])).to_iter_dataset(), 4))


@pytest.mark.parametrize("impl", ["xla", "dot_product", "splash"])
def test_packed_row_equals_documents_alone(impl):
    """Logits of each document inside a packed row (with right padding) equal the document run alone,
    and the packed batch's summed loss equals the documents' summed losses."""
    cfg = tiny_config("mistral", num_layers=2, sliding_window=5, attention=impl)  # GQA + sliding window
    model = init_model(cfg, seed=1)
    lengths = [(7, 9, 4), (11, 6)]  # two rows of 24: 4 and 7 padding tokens
    docs = [_examples(row, seed=i) for i, row in enumerate(lengths)]
    batch = {k: np.zeros((2, 24), np.int32) for k in ("input_ids", "targets", "loss_mask", "segment_ids")}
    for r, row in enumerate(docs):
        at = 0
        for seg, ex in enumerate(row, 1):
            n = len(ex["input_ids"])
            for key in ("input_ids", "targets", "loss_mask"):
                batch[key][r, at : at + n] = ex[key]
            batch["segment_ids"][r, at : at + n] = seg
            at += n
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    packed = np.asarray(jax.jit(lambda b: model(b["input_ids"], segment_ids=b["segment_ids"]))(batch))
    graphdef, params, rest = split_model(model)
    loss = jax.jit(lambda b: eval_step(graphdef, params, rest, b))
    total, count = 0.0, 0.0
    for r, row in enumerate(docs):
        at = 0
        for ex in row:
            n = len(ex["input_ids"])
            alone = np.asarray(model(jnp.asarray(ex["input_ids"])[None]))[0]
            np.testing.assert_allclose(packed[r, at : at + n], alone, rtol=0, atol=2e-5)
            l, c = loss({k: jnp.asarray(v)[None] for k, v in ex.items()})
            total, count, at = total + float(l), count + float(c), at + n
    got_total, got_count = loss(batch)
    assert float(got_count) == count
    np.testing.assert_allclose(float(got_total), total, rtol=1e-5)


def test_packed_sft_batches_hold_whole_conversations_and_resume(tmp_path):
    tok = tiny_hf.code_tokenizer()
    convs = [
        [
            {"role": "user", "content": f"question {i} " * (1 + i % 4)},
            {"role": "assistant", "content": f"answer {i} " * (1 + i % 3)},
        ]
        for i in range(24)
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    kw = dict(seq_len=128, batch_size=1, seed=0, shuffle=False, num_epochs=1)  # batch 1: no row dropped
    packed = list(data.chat_sft_dataset(path, tok, packing=True, packing_bins=4, **kw))
    assert len(packed) < len(convs)
    seen = []
    for b in packed:
        row = {k: v[0] for k, v in b.items()}
        for seg in sorted(set(row["segment_ids"].tolist()) - {0}):
            at = row["segment_ids"] == seg
            seen.append(tuple(tuple(row[k][at].tolist()) for k in ("input_ids", "targets", "loss_mask")))
            assert row["positions"][at].tolist() == list(range(int(at.sum())))
        assert not row["loss_mask"][row["segment_ids"] == 0].any()
    want = []
    for c in convs:
        ids, mask = data.encode_chat(c, tok)
        want.append((tuple(ids[:-1].tolist()), tuple(ids[1:].tolist()), tuple(mask[1:].tolist())))
    assert sorted(seen) == sorted(want)  # every conversation exactly once, whole, with its own loss mask
    it = iter(data.chat_sft_dataset(path, tok, packing=True, packing_bins=4, **kw))
    next(it)
    state = json.loads(json.dumps(it.get_state()))  # as the checkpoint stores it
    again = iter(data.chat_sft_dataset(path, tok, packing=True, packing_bins=4, **kw))
    data.set_iterator_state(again, state)
    rest = list(it)
    assert len(rest) == len(packed) - 1
    for a, b in zip(rest, again):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_sft_run_with_packing_trains(tmp_path):
    from pathlib import Path

    from jaxlab.config import load
    from jaxlab.train import sft

    folder = tiny_hf.tiny_qwen2_folder(tmp_path / "hf", tiny_hf.code_tokenizer())
    config = Path(__file__).resolve().parents[2] / "configs" / "sft_smollm2.yaml"
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        f"model.path={folder}",
        "data.max_examples=64",
        "data.seq_len=128",
        "data.batch_size=2",
        "data.eval_batches=2",
        "data.samples=0",
        "data.packing=true",
        "data.packing_bins=4",
        "optim.learning_rate=0.01",
        "optim.warmup_steps=1",
        "optim.decay_steps=6",
        "train.steps=6",
        "train.progress=false",
        "checkpoint.async_save=false",
    ]
    summary = sft.run(load(sft.Config, config, overrides))
    assert summary["steps"] == 6 and summary["loss_after"] < summary["loss_before"]
    with pytest.raises(Exception, match="packing_bins"):
        load(sft.Config, config, [f"output_dir={tmp_path / 'r2'}", "data.packing_bins=0"])
