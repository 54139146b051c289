"""SFT warm-up before RL-Text2Vis: ``jaxlab run configs/text2vis_warmup_smollm2.yaml [key=value ...]``.

SmolLM2-135M-Instruct answers 0 of 32 held-out tasks in the reply format the reward reads, so GRPO
from the base model sees groups whose rewards are all zero and has nothing to push on.  This
runner teaches the format first: it draws **train-split** tasks from the project's own seeded vega
generator (:mod:`experiments.text2vis.generator`; never the held-out split, never an evaluation
set), writes each as a chat conversation (the RL prompt's system + user turns, and as the
assistant turn the gold reply ``{"answer": <gold answer>, "code": <gold code>}``), and fine-tunes
on them with the core SFT runner (:mod:`jaxlab.train.sft`: loss on assistant tokens only,
checkpoints, resume).  Conversations longer than ``tasks.max_tokens`` are dropped, not cut (a
cut reply would teach an unfinished JSON object), and counted.

Held-out tasks are scored greedily with the RL reward before (the base model, ``eval.before``)
and after (the exported ``sft/hf_model`` reloaded from disk, exactly what the RL run starts from),
as :mod:`experiments.text2vis.rl_eval` reports them: format rate, code found, execution success,
answer match, with Wilson 95% intervals.  Then
``jaxlab run configs/rl_text2vis_smollm2.yaml model.path=<output_dir>/sft/hf_model`` runs GRPO on it.

Writes under ``output_dir``: ``conversations.jsonl`` (the SFT rows), ``sft/`` (the SFT run: metrics,
loss curve, checkpoints, ``hf_model/``), ``eval_before.jsonl`` / ``eval_after.jsonl`` and
``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal

from experiments.text2vis.eval_runner import gold_replies
from experiments.text2vis.reward import RLText2VisReward
from experiments.text2vis.rl_eval import evaluate_policy, t2v_codec
from experiments.text2vis.tasks import Text2VisTask, build_messages
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.runs import claim_output_dir
from jaxlab.train import sft
from jaxlab.train.checkpoint import CheckpointConfig
from jaxlab.train.data import encode_chat
from jaxlab.train.optim import OptimConfig
from jaxlab.train.pretrain import ModelSection, load_model
from jaxlab.train.trainer import TrainConfig

__all__ = ["Config", "conversations", "run"]


@dataclasses.dataclass(frozen=True)
class TaskSection:
    train_tasks: int = 256
    """Train-split tasks drawn from the generator (before dropping the over-long ones)."""
    seed: int = 0
    max_tokens: int = 1024
    """Token budget of one conversation (prompt + reply), the SFT sequence length; longer ones are dropped."""
    heldout_fraction: float = 0.05
    """Of the conversations, held out for the SFT loss (train-split tasks too: not the evaluation set)."""
    batch_size: int = 2
    eval_batches: int = 4
    packing: bool = True
    """Pack whole conversations into ``max_tokens`` rows (segment ids keep them apart; jaxlab.train.packing):
    conversations of 460-1170 SmolLM2 tokens would leave about a third of each padded row empty."""

    def __post_init__(self) -> None:
        require_positive(
            **{f"tasks.{k}": getattr(self, k) for k in ("train_tasks", "max_tokens", "batch_size", "eval_batches")}
        )
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"tasks.heldout_fraction: expected a number in (0, 1), got {self.heldout_fraction!r}")


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """Greedy held-out scoring, by default as configs/rl_text2vis_smollm2.yaml scores (so the numbers line up)."""

    heldout_tasks: int = 32
    seed: int = 0
    max_new_tokens: int = 160
    batch_size: int = 16
    prompt_bucket: int = 256
    before: bool = True
    """Also score the model before the warm-up (the base model's rates)."""
    timeout_s: float = 20.0
    memory_mb: int = 1024
    workers: int = 2

    def __post_init__(self) -> None:
        require_positive(
            **{f"eval.{k}": getattr(self, k) for k in ("max_new_tokens", "batch_size", "prompt_bucket", "workers")}
        )


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str = "runs/text2vis_warmup_smollm2"
    overwrite: bool = False
    model: ModelSection = ModelSection()
    tasks: TaskSection = TaskSection()
    parser: Literal["json", "released"] = "json"
    """How the held-out evaluation reads replies (experiments.text2vis.parse)."""
    optim: OptimConfig = OptimConfig(learning_rate=5e-5, warmup_steps=2, decay_steps=40, weight_decay=0.0)
    train: TrainConfig = TrainConfig(steps=40)
    checkpoint: CheckpointConfig = CheckpointConfig(every_steps=10, keep=1)
    eval: EvalSection = EvalSection()

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir: expected a non-empty path")
        if self.tasks.batch_size % self.optim.grad_accum_steps:
            raise ConfigError(
                f"optim.grad_accum_steps={self.optim.grad_accum_steps} must divide "
                f"tasks.batch_size={self.tasks.batch_size}"
            )


def conversations(tasks: list[Text2VisTask], tokenizer: Any, max_tokens: int) -> tuple[list[dict], int]:
    """``({"messages": [...]}`` rows of the tasks that fit ``max_tokens + 1`` tokens, how many were dropped)."""
    rows, dropped = [], 0
    for task, reply in zip(tasks, gold_replies(tasks)):
        messages = [*build_messages(task), {"role": "assistant", "content": reply}]
        ids, _ = encode_chat(messages, tokenizer)
        if len(ids) > max_tokens + 1:
            dropped += 1
            continue
        rows.append({"messages": messages, "task_id": task.id, "kind": task.kind, "tokens": int(len(ids))})
    return rows, dropped


def _sft_config(cfg: Config, source: Path, n: int) -> sft.Config:
    t = cfg.tasks
    return sft.Config(
        output_dir=str(Path(cfg.output_dir) / "sft"),
        overwrite=cfg.overwrite,
        model=cfg.model,
        data=sft.DataSection(
            source=str(source),
            heldout_fraction=t.heldout_fraction,
            max_examples=n,
            seq_len=t.max_tokens,
            batch_size=t.batch_size,
            eval_batches=t.eval_batches,
            truncate=False,
            packing=t.packing,
            samples=0,
            seed=t.seed,
        ),
        optim=cfg.optim,
        train=cfg.train,
        checkpoint=cfg.checkpoint,
    )


def _evaluate(cfg: Config, model: Any, tokenizer: Any, heldout: list[Text2VisTask], log: Path) -> dict:
    e = cfg.eval
    reward = RLText2VisReward(timeout_s=e.timeout_s, memory_mb=e.memory_mb, max_workers=e.workers, parser=cfg.parser)
    return evaluate_policy(
        model,
        t2v_codec(tokenizer),
        heldout,
        reward,
        log,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        prompt_bucket=e.prompt_bucket,
    )


OUTPUTS = ("conversations.jsonl", "sft", "eval_before.jsonl", "eval_after.jsonl", "results.json")
RESUMABLE = ("train.steps", "train.progress", "train.log_every", "train.eval_every", "checkpoint", "eval.workers")


def run(cfg: Config) -> dict:
    """Build the SFT rows, score the base model, fine-tune, score the exported model; returns results.json."""
    from experiments.text2vis.generator import make_tasks
    from jaxlab.models.pretrained import load_pretrained

    out = Path(cfg.output_dir)
    resumed = claim_output_dir(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=RESUMABLE)
    t0 = time.time()
    model, tokenizer = load_model(cfg.model)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model: the tokenizer of {cfg.model.path or cfg.model.name!r} has no chat template")
    train = make_tasks("train", cfg.tasks.train_tasks, cfg.tasks.seed)
    heldout = make_tasks("heldout", cfg.eval.heldout_tasks, cfg.eval.seed)
    if {t.id for t in train} & {t.id for t in heldout} or any(t.split != "train" for t in train):
        raise RuntimeError("warm-up tasks: the generator returned held-out tasks for the train split")
    rows, dropped = conversations(train, tokenizer, cfg.tasks.max_tokens)
    if len(rows) < 2 * cfg.tasks.batch_size:
        raise ConfigError(
            f"tasks.max_tokens: only {len(rows)} of {len(train)} conversations fit "
            f"{cfg.tasks.max_tokens} tokens; raise it or tasks.train_tasks"
        )
    conv_path = out / "conversations.jsonl"
    conv_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before_path = out / "eval_before.jsonl"
    before = None
    if cfg.eval.before:
        prior = out / "results.json"
        if resumed and prior.exists():  # a resumed run keeps the base model's numbers it already has
            before = json.loads(prior.read_text()).get("before")
        if before is None:
            print(f"[warmup] scoring the base model on {len(heldout)} held-out tasks ...", flush=True)
            before = _evaluate(cfg, model, tokenizer, heldout, before_path)
            (out / "results.json").write_text(json.dumps({"before": before}, indent=2, default=str))
    del model
    t_sft = time.time()
    summary = sft.run(_sft_config(cfg, conv_path, len(rows)))
    sft_s = time.time() - t_sft
    hf_dir = Path(summary["outputs"]["hf_model"])
    trained, trained_tok = load_pretrained(str(hf_dir))  # what the RL config loads with model.path
    print(f"[warmup] scoring the warmed-up model ({hf_dir}) ...", flush=True)
    after = _evaluate(cfg, trained, trained_tok, heldout, out / "eval_after.jsonl")
    lengths = [r["tokens"] for r in rows]
    result = {
        "before": before,
        "after": after,
        "hf_model": str(hf_dir),
        "conversations": len(rows),
        "dropped_over_max_tokens": dropped,
        "conversation_tokens": {"min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)},
        "kinds": {k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})},
        "sft": {k: summary[k] for k in ("steps", "resumed_from", "loss_before", "loss_after")},
        "heldout_tasks": len(heldout),
        "seconds": {"total": time.time() - t0, "sft": sft_s},
        "config": to_dict(cfg),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    show = ("format_rate", "code_found_rate", "exec_rate", "answer_rate")
    print(
        json.dumps(
            {"before": {k: before[k] for k in show} if before else None, "after": {k: after[k] for k in show}}, indent=2
        )
    )
    return result
