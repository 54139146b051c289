"""The SFT warm-up runner on a tiny random Qwen2 folder: train-split gold conversations only, over-long ones
dropped, the reply tokens trained, the exported model reloads and the RL runner starts from it."""

import json

import numpy as np
import pytest

from experiments.text2vis import rl_runner, warmup
from experiments.text2vis.eval_runner import gold_replies
from experiments.text2vis.generator import make_tasks
from jaxlab.cli import load_run_config
from jaxlab.config import ConfigError
from jaxlab.train.data import encode_chat
from tests.train import tiny_hf

CONFIG = "configs/text2vis_warmup_smollm2.yaml"


def _cfg(path, overrides):
    return load_run_config(path, overrides)[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tok = tiny_hf.code_tokenizer()
    return tiny_hf.tiny_qwen2_folder(tmp_path_factory.mktemp("qwen2") / "hf", tok, max_position_embeddings=2048), tok


def test_conversations_are_gold_replies_to_train_tasks_and_long_ones_are_dropped(tiny):
    _, tok = tiny
    tasks = make_tasks("train", 6, seed=1)
    everything, none_dropped = warmup.conversations(tasks, tok, 100_000)
    assert none_dropped == 0 and len(everything) == 6
    budget = sorted(r["tokens"] for r in everything)[3]  # the 4 shortest fit: tokens <= budget + 1
    rows, dropped = warmup.conversations(tasks, tok, budget - 1)
    assert dropped == 2 and len(rows) == 4 and all(r["tokens"] <= budget for r in rows)
    by_id = {t.id: t for t in tasks}
    for r in rows:
        task = by_id[r["task_id"]]
        assert task.split == "train"
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert r["messages"][-1]["content"] == gold_replies([task])[0]
        assert json.loads(r["messages"][-1]["content"]) == {"answer": task.answer, "code": task.gold_code}
        ids, mask = encode_chat(r["messages"], tok)
        assert len(ids) == r["tokens"] and 0 < mask.sum() < len(ids)


@pytest.mark.slow
def test_warmup_run_trains_exports_and_the_rl_runner_starts_from_it(tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "warm"
    cfg = _cfg(
        CONFIG,
        [
            f"output_dir={out}",
            f"model.path={folder}",
            "tasks.train_tasks=12",
            "tasks.max_tokens=1400",
            "tasks.batch_size=2",
            "tasks.eval_batches=1",
            "tasks.heldout_fraction=0.2",
            "optim.learning_rate=0.01",
            "optim.warmup_steps=0",
            "optim.decay_steps=4",
            "train.steps=4",
            "train.progress=false",
            "checkpoint.every_steps=2",
            "eval.heldout_tasks=2",
            "eval.max_new_tokens=4",
            "eval.batch_size=2",
            "eval.prompt_bucket=64",
        ],
    )
    result = warmup.run(cfg)
    assert result["conversations"] + result["dropped_over_max_tokens"] == 12 and result["dropped_over_max_tokens"] > 0
    assert result["conversation_tokens"]["max"] <= 1401
    assert result["sft"]["steps"] == 4 and result["sft"]["loss_after"] < result["sft"]["loss_before"]
    for when in ("before", "after"):
        assert result[when]["n"] == 2
        assert len((out / f"eval_{when}.jsonl").read_text().splitlines()) == 2
    rows = [json.loads(line) for line in (out / "conversations.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in rows}.isdisjoint({t.id for t in make_tasks("heldout", 2, 0)})

    # the RL runner loads the exported folder (model.path) and takes a GRPO step from it
    trained, _, _ = rl_runner._load(rl_runner.ModelSection(path=result["hf_model"]))
    initial, _, _ = rl_runner._load(rl_runner.ModelSection(path=str(folder)))
    emb = lambda m: np.asarray(m.embed.embedding.value)  # noqa: E731
    assert emb(trained).shape == emb(initial).shape and not np.allclose(emb(trained), emb(initial))
    rl = _cfg(
        "configs/rl_text2vis_smollm2.yaml",
        [
            f"output_dir={tmp_path / 'rl'}",
            f"model.path={result['hf_model']}",
            "steps=1",
            "prompts_per_step=1",
            "progress=false",
            "data.train_tasks=2",
            "data.heldout_tasks=1",
            "rollout.num_generations=2",
            "rollout.max_new_tokens=4",
            "rollout.prompt_bucket=64",
            "grpo.micro_batch=2",
            "eval.max_new_tokens=4",
            "eval.batch_size=1",
            "checkpoint.every_steps=0",
        ],
    )
    res = rl_runner.run(rl)
    assert res["steps"] == 1 and res["after"]["n"] == 1
    assert json.loads((tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1


def test_bad_warmup_config_names_the_field(tmp_path):
    with pytest.raises((ConfigError, ValueError), match="tasks.heldout_fraction"):
        _cfg(CONFIG, [f"output_dir={tmp_path}", "tasks.heldout_fraction=1.5"])
    with pytest.raises((ConfigError, ValueError), match="grad_accum_steps"):
        _cfg(CONFIG, [f"output_dir={tmp_path}", "tasks.batch_size=3", "optim.grad_accum_steps=2"])
