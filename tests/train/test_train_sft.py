"""The SFT runner on a tiny Qwen2 HF folder: assistant-only loss goes down, hf_model/ is written, bad data is named."""

import json
from pathlib import Path

import pytest
import transformers

from jaxlab.config import ConfigError, load
from jaxlab.train import sft, sft_data
from jaxlab.train.data import encode_chat, load_chat_jsonl
from tests.train import tiny_hf

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sft_smollm2.yaml"


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory):
    return tiny_hf.tiny_qwen2_folder(tmp_path_factory.mktemp("qwen2") / "hf", tiny_hf.code_tokenizer())


def test_stdlib_docstring_conversations_are_split_by_module(tmp_path):
    train, held = sft_data.prepare(sft_data.BUILTIN, tmp_path, 0.05, 10_000, 0)
    tr, he = load_chat_jsonl(train), load_chat_jsonl(held)
    assert len(tr) > 1000 and len(he) > 20
    module = lambda c: c[0]["content"].split("`")[1].split("(")[0].rsplit(".", 1)[0]  # noqa: E731
    assert not {module(c) for c in tr} & {module(c) for c in he}
    assert all(c[1]["role"] == "assistant" and len(c[1]["content"]) >= 20 for c in tr[:50])


def test_sft_run_trains_assistant_tokens_and_exports(qwen2_folder, tmp_path):
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}",
        f"model.path={qwen2_folder}",
        "data.max_examples=64",
        "data.seq_len=64",
        "data.batch_size=4",
        "data.eval_batches=2",
        "data.samples=1",
        "optim.learning_rate=0.01",
        "optim.warmup_steps=1",
        "optim.decay_steps=8",
        "train.steps=8",
        "train.progress=false",
        "checkpoint.every_steps=4",
        "checkpoint.async_save=false",
    ]
    summary = sft.run(load(sft.Config, CONFIG, overrides))
    assert summary["steps"] == 8 and summary["train_conversations"] == 64
    assert summary["loss_after"] < summary["loss_before"]
    assert summary["samples_after"][0]["question"].startswith("What does `")
    tok = transformers.AutoTokenizer.from_pretrained(out / "hf_model")
    row = load_chat_jsonl(out / "sft_data" / "heldout.jsonl")[0]
    ids, mask = encode_chat(row, tok)  # the exported tokenizer keeps the chat template the mask relies on
    assert 0 < mask.sum() < len(ids)
    assert json.loads((out / "hf_model" / "generation_config.json").read_text())["eos_token_id"] == tok.eos_token_id


def test_bad_data_source_is_named(qwen2_folder, tmp_path):
    cfg = load(
        sft.Config, CONFIG, [f"output_dir={tmp_path / 'r'}", f"model.path={qwen2_folder}", "data.source=chats.csv"]
    )
    with pytest.raises(ConfigError, match="data.source.*chats.csv"):
        sft.run(cfg)
