"""Grain pipelines: stdlib corpus split, packing determinism, mid-epoch resume, chat SFT masks."""

import json

import numpy as np
import pytest

from jaxlab.train import data

SEQ = 48


def _bytes(text):
    return list(text.encode("utf-8"))


@pytest.fixture(scope="module")
def corpus():
    files = data.stdlib_python_files()
    train, heldout = data.split_files(files, 0.1)
    return files, train, heldout


def _pretrain(files, seed=0, **kw):
    return data.pretrain_dataset(files, _bytes, eos_id=0, seq_len=SEQ, batch_size=4, seed=seed, **kw)


def test_stdlib_corpus_split_is_deterministic_and_disjoint(corpus):
    files, train, heldout = corpus
    assert len(files) > 300 and all(p.suffix == ".py" for p in files)
    assert not any(
        part in ("test", "tests", "site-packages")
        for p in files
        for part in p.relative_to(data.stdlib_root()).parts[:-1]
    )
    assert set(train).isdisjoint(heldout) and set(train) | set(heldout) == set(files)
    assert 0.05 < len(heldout) / len(files) < 0.15
    # the split depends on each path only, not on the list's order or contents
    again_train, again_heldout = data.split_files(list(reversed(files[: len(files) // 2])), 0.1)
    assert set(again_heldout) == set(heldout) & set(files[: len(files) // 2])
    with pytest.raises(ValueError, match="heldout_fraction"):
        data.split_files(files, 1.5)


def test_packing_is_deterministic_and_shifted(corpus):
    _, train, _ = corpus
    a = data.take_batches(_pretrain(train[:40]), 6)
    b = data.take_batches(_pretrain(train[:40]), 6)
    c = data.take_batches(_pretrain(train[:40], seed=1), 6)
    for x, y in zip(a, b):
        for k in ("input_ids", "targets", "loss_mask"):
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    batch = a[0]
    assert batch["input_ids"].shape == (4, SEQ) and batch["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(batch["input_ids"][:, 1:], batch["targets"][:, :-1])
    assert batch["loss_mask"].all()


def test_packing_concatenates_documents_with_eos(corpus):
    _, train, _ = corpus
    files = train[:3]
    windows = data.take_batches(_pretrain(files, shuffle=False, num_epochs=1), 10_000)
    stream = np.concatenate(
        [np.concatenate([b["input_ids"], b["targets"][:, -1:]], axis=1).reshape(-1) for b in windows]
    )
    expected = np.concatenate([np.asarray(_bytes(f.read_text()) + [0], np.int32) for f in files])
    n = len(stream)
    assert n > 0 and n <= len(expected) < n + 4 * (SEQ + 1) + SEQ + 1
    np.testing.assert_array_equal(stream, expected[:n])


def test_heldout_pipeline_reads_only_heldout_files(corpus):
    _, train, heldout = corpus
    windows = data.take_batches(_pretrain(heldout, shuffle=False, num_epochs=1), 3)
    first = bytes(np.concatenate([windows[0]["input_ids"][0], windows[0]["targets"][0, -1:]]).astype(np.uint8))
    assert heldout[0].read_bytes().startswith(first)


@pytest.mark.parametrize("consumed", [0, 3, 17])
def test_iterator_resumes_mid_epoch(corpus, consumed):
    _, train, _ = corpus
    ds = _pretrain(train[:30], num_epochs=None)
    it = iter(ds)
    for _ in range(consumed):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # as stored in a checkpoint
    expected = [next(it) for _ in range(8)]
    resumed = iter(ds)
    data.set_iterator_state(resumed, state)
    for want in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["input_ids"], want["input_ids"])


# ----------------------------------------------------------------------------- chat SFT
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONVERSATIONS = [
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times 3?"},
        {"role": "assistant", "content": "12, since 4 * 3 = 12."},
    ],
    [{"role": "user", "content": "Name a Python keyword."}, {"role": "assistant", "content": "lambda"}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi there"}],
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|im_start|>", "<|im_end|>", "<pad>"]
    texts = [m["content"] for conv in CONVERSATIONS for m in conv] + ["system user assistant"]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>")
    hf.chat_template = TEMPLATE
    return hf


@pytest.fixture()
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CONVERSATIONS))
    return path


def test_chat_mask_covers_exactly_the_assistant_turns(tokenizer):
    for conv in CONVERSATIONS:
        ids, mask = data.encode_chat(conv, tokenizer)
        full = tokenizer.apply_chat_template(conv, tokenize=False)
        assert tokenizer.decode(ids) == full
        trained = tokenizer.decode(ids[mask == 1])
        expected = "".join(m["content"] + "<|im_end|>\n" for m in conv if m["role"] == "assistant")
        assert trained == expected
        assert "<|im_start|>assistant" not in trained


def test_chat_pipeline_batches_align_mask_with_targets(tokenizer, chat_file):
    ds = data.chat_sft_dataset(chat_file, tokenizer, seq_len=64, batch_size=3, seed=0, num_epochs=1)
    (batch,) = data.take_batches(ds, 5)
    pad = tokenizer.pad_token_id
    trained = sorted(tokenizer.decode(t[m == 1]) for t, m in zip(batch["targets"], batch["loss_mask"]))
    expected = sorted(
        "".join(m["content"] + "<|im_end|>\n" for m in conv if m["role"] == "assistant") for conv in CONVERSATIONS
    )
    assert trained == expected
    assert (batch["loss_mask"][batch["targets"] == pad] == 0).all()
    np.testing.assert_array_equal(batch["input_ids"][:, 1:], batch["targets"][:, :-1])
    # same seed -> same order; resumable like the pretraining pipeline
    again = data.take_batches(
        data.chat_sft_dataset(chat_file, tokenizer, seq_len=64, batch_size=3, seed=0, num_epochs=1), 1
    )[0]
    np.testing.assert_array_equal(again["input_ids"], batch["input_ids"])


def test_chat_shards_partition_the_conversations(tokenizer, chat_file):
    kw = dict(seq_len=64, batch_size=1, seed=0, num_epochs=1, shuffle=False)
    whole = {tuple(b["input_ids"][0]) for b in data.take_batches(data.chat_sft_dataset(chat_file, tokenizer, **kw), 99)}
    parts = [
        [
            tuple(b["input_ids"][0])
            for b in data.take_batches(
                data.chat_sft_dataset(chat_file, tokenizer, shard_index=i, shard_count=2, **kw), 99
            )
        ]
        for i in range(2)
    ]
    assert len(whole) == len(CONVERSATIONS) and all(parts)  # each host reads a non-empty, disjoint share
    assert not set(parts[0]) & set(parts[1]) and set(parts[0]) | set(parts[1]) == whole
    with pytest.raises(ValueError, match="cannot fill 99 shards"):
        data.chat_sft_dataset(chat_file, tokenizer, shard_index=0, shard_count=99, **kw)


def test_chat_errors_name_line_and_field(tokenizer, tmp_path, chat_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": CONVERSATIONS[1]})
        + "\n"
        + json.dumps({"messages": [{"role": "robot", "content": "x"}]})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: messages\[0\]"):
        data.load_chat_jsonl(bad)
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(ValueError, match="no assistant message"):
        data.load_chat_jsonl(bad)
    too_short = data.chat_sft_dataset(chat_file, tokenizer, seq_len=8, batch_size=1, seed=0, shuffle=False)
    with pytest.raises(ValueError, match="exceeds seq_len"):
        data.take_batches(too_short, 1)


@pytest.mark.slow
def test_chat_mask_with_the_real_smollm2_tokenizer():
    """SmolLM2's template injects a default system prompt; only assistant turns are trained."""
    from jaxlab.models.smollm2 import load_tokenizer

    tok = load_tokenizer()
    for conv in CONVERSATIONS:
        ids, mask = data.encode_chat(conv, tok)
        assert tok.decode(ids) == tok.apply_chat_template(conv, tokenize=False)
        expected = "".join(m["content"] + "<|im_end|>\n" for m in conv if m["role"] == "assistant")
        assert tok.decode(ids[mask == 1]) == expected
        if conv[0]["role"] != "system":  # the injected system prompt is context, not target
            assert "You are a helpful AI assistant" in tok.decode(ids[mask == 0])
