"""Runner: supervised fine-tuning on chat conversations, loss on the assistant's tokens only.

``jaxlab run configs/sft_smollm2.yaml [key=value ...]`` loads ``model.name`` or the
HF folder ``model.path``, prepares the conversations (:mod:`jaxlab.train.sft_data`:
generated from the stdlib by default, or the user's JSONL / parquet), renders them
with the tokenizer's chat template (:func:`jaxlab.train.data.chat_sft_dataset`: the
mask is 1 on assistant-written tokens, end-of-turn included, and 0 on the prompt,
headers and padding), measures the held-out assistant-token loss, trains with AdamW
(checkpointing and resuming as pretraining does), measures again and writes under
``output_dir``: ``sft_data/{train,heldout}.jsonl``, ``metrics.jsonl``,
``tensorboard/``, ``loss_curve.png``, ``checkpoints/``, ``model_config.json`` +
``tokenizer/`` (for ``jaxlab export``), ``hf_model/`` and ``summary.json``
(with samples of the model's answers to held-out questions before and after).

Multi-host (``distributed.*``, see :mod:`jaxlab.train.run_setup`): process 0
prepares the data files and writes every output; each host reads only its
``data.shards`` of the training conversations. ``output_dir`` must be on a
filesystem all hosts share (the orbax checkpoints need that anyway).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from jaxlab.config import ConfigError, require_positive
from jaxlab.distributed import DistributedConfig, is_primary, raise_everywhere
from jaxlab.models.hf import to_hf
from jaxlab.sharding import MeshConfig
from jaxlab.train import data, sft_data
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.export import save_model_spec
from jaxlab.train.metrics import plot_loss_curve
from jaxlab.train.optim import OptimConfig
from jaxlab.train import pretrain
from jaxlab.train.pretrain import ModelSection, check_training_config, load_model, model_label
from jaxlab.train.step import evaluate
from jaxlab.train.lora_train import fit_maybe_lora, save_adapter
from jaxlab.train.run_setup import build_mesh, data_shards, host_copy_result, primary_metrics, say, start_run
from jaxlab.train.shards import ConcatShards
from jaxlab.train.trainer import TrainConfig
from jaxlab.transforms.lora import LoRAConfig


@dataclasses.dataclass(frozen=True)
class DataSection:
    source: str = sft_data.BUILTIN
    """``stdlib-docstrings`` (generated, ships with every Python), or a ``.jsonl`` / ``.parquet`` file of
    ``{"messages": [...]}`` rows."""
    heldout_fraction: float = 0.05
    max_examples: int = 4096
    """At most this many training conversations (after shuffling)."""
    seq_len: int = 128
    batch_size: int = 4
    eval_batches: int = 8
    truncate: bool = True
    """Cut conversations longer than ``seq_len + 1`` tokens; false: such a conversation is an error."""
    packing: bool = False
    """Pack several whole conversations per row (first-fit, jaxlab.train.packing); segment ids keep them apart
    and positions restart per conversation. False: one right-padded conversation per row."""
    packing_bins: int = 16
    """Open rows the first-fit packer fills at once (more: less padding, more reordering)."""
    samples: int = 3
    """Held-out questions answered (greedy) before and after training, for the summary; 0 = none."""
    seed: int = 0
    shards: int | None = None
    """Independent streams the training conversations are cut into (``rows[i::shards]``, ``batch_size / shards``
    rows each); a process reads only its own. ``None``: one per process. Fix it to train on the same batches
    under any process count (see jaxlab.train.shards)."""

    def __post_init__(self) -> None:
        require_positive(
            **{n: getattr(self, n) for n in ("max_examples", "seq_len", "batch_size", "eval_batches", "packing_bins")}
        )
        if self.shards is not None:
            require_positive(**{"data.shards": self.shards})
            if self.batch_size % self.shards:
                raise ValueError(f"data.shards={self.shards} must divide data.batch_size={self.batch_size}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {self.heldout_fraction!r}")
        if self.samples < 0:
            raise ValueError(f"samples: expected >= 0, got {self.samples!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    runner: str = "jaxlab.train.sft"
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optim: OptimConfig = OptimConfig(learning_rate=5e-5, warmup_steps=5, decay_steps=100)
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    mesh: MeshConfig | None = None
    distributed: DistributedConfig | None = None
    """Multi-process run (``jax.distributed``); ``None``: one process. ``distributed: {}`` auto-detects."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters with the base frozen; ``None``: every weight is trained."""

    def __post_init__(self) -> None:
        check_training_config(self)


OUTPUTS = (
    "config.yaml",
    "sft_data",
    "metrics.jsonl",
    "tensorboard",
    "loss_curve.png",
    "summary.json",
    "checkpoints",
    "model_config.json",
    "tokenizer",
    "hf_model",
    "lora_adapter",
    "profile",
)
# the keys a resumed run may change are pretraining's (how far to train, logging, checkpointing, mesh, processes)
RESUMABLE = pretrain.RESUMABLE


def _answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 48) -> list[dict]:
    from jaxlab.generate import generate

    if not conversations:
        return []
    prompts = [[m for m in c if m["role"] != "assistant"][:1] for c in conversations]
    outs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    return [
        {"question": p[0]["content"], "reference": c[-1]["content"], "answer": text}
        for p, c, text in zip(prompts, conversations, outs.texts)
    ]


def run(cfg: Config) -> dict:
    """Fine-tune per ``cfg``; returns (and writes to ``summary.json``) the run summary."""
    t0 = time.time()
    out = start_run(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=RESUMABLE)
    d = cfg.data
    error = None
    if is_primary():  # one writer; the others read the files once it is done (or fail with its error)
        try:
            sft_data.prepare(d.source, out / "sft_data", d.heldout_fraction, d.max_examples, d.seed)
        except (ValueError, FileNotFoundError) as exc:
            error = ConfigError(f"data.source: {exc}")
    raise_everywhere(error)
    train_path, held_path = out / "sft_data" / "train.jsonl", out / "sft_data" / "heldout.jsonl"
    name = model_label(cfg.model)
    say("sft", f"loading {name} ...")
    model, tokenizer = load_model(cfg.model)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model: the tokenizer of {name!r} has no chat template to render conversations with")
    if is_primary():
        save_model_spec(out, model.config, tokenizer)
    common = dict(
        seq_len=d.seq_len,
        batch_size=d.batch_size,
        seed=d.seed,
        truncate=d.truncate,
        packing=d.packing,
        packing_bins=d.packing_bins,
    )
    eval_set = data.take_batches(
        data.chat_sft_dataset(held_path, tokenizer, shuffle=False, num_epochs=1, **common), d.eval_batches
    )
    if not eval_set:
        raise ConfigError(
            f"data.eval_batches: the held-out conversations fill no batch of {d.batch_size}; "
            "raise data.heldout_fraction or lower data.batch_size"
        )
    mine, n_shards = data_shards(d.shards, d.batch_size)
    shard_common = {**common, "batch_size": d.batch_size // n_shards}
    train_set = ConcatShards(
        {
            i: data.chat_sft_dataset(train_path, tokenizer, shard_index=i, shard_count=n_shards, **shard_common)
            for i in mine
        }
    )
    held_rows = data.load_chat_jsonl(held_path)[: d.samples] if is_primary() else []

    mesh = build_mesh(cfg.mesh)
    checkpointer = Checkpointer(out / "checkpoints", cfg.checkpoint)
    resume_step = checkpointer.resume_step()
    metrics = primary_metrics(out, resume_step)  # logs from process 0 only
    try:
        say("sft", f"held-out assistant-token loss before training ({len(eval_set)} batches) ...")
        before = evaluate(model, eval_set)
        samples_before = _answers(model, tokenizer, held_rows)  # process 0 only (the others hold no rows)
        if resume_step is None and metrics is not None:
            metrics.write(0, "eval", before)
        say("sft", f"before: loss {before['loss']:.4f} over {before['tokens']:.0f} assistant tokens")

        def eval_fn(graphdef, params, rest):
            return evaluate((graphdef, params, rest), eval_set)

        result = fit_maybe_lora(
            model,
            cfg.lora,
            train_set,
            cfg.optim,
            cfg.train,
            checkpointer=checkpointer,
            metrics=metrics,
            eval_fn=eval_fn,
            mesh=mesh,
            profile_dir=out / "profile",
            donate_model=True,
        )  # one copy of the weights; ``model`` is done with
        after = eval_fn(result.graphdef, result.state.params, result.rest)
        if result.resumed_from != result.step and metrics is not None:
            metrics.write(result.step, "eval", after)
    finally:
        if metrics is not None:
            metrics.close()
        checkpointer.close()
    result = host_copy_result(result)  # the weights may be spread over hosts
    if not is_primary():
        return {"model": name, "steps": result.step, "loss_before": before["loss"], "loss_after": after["loss"]}
    trained = result.model()
    samples_after = _answers(trained, tokenizer, held_rows)
    hf_dir = to_hf(trained, out / "hf_model", tokenizer=tokenizer)
    adapter_dir = save_adapter(result, model.config, out / "lora_adapter", base_model=name)
    plot_loss_curve(
        out / "metrics.jsonl",
        out / "loss_curve.png",
        title=f"SFT of {Path(name).name} (assistant tokens, seq {d.seq_len}, batch {d.batch_size})",
    )
    summary = {
        "model": name,
        "data": d.source,
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "train_conversations": len(data.load_chat_jsonl(train_path)),
        "heldout_tokens": int(before["tokens"]),
        "loss_before": before["loss"],
        "loss_after": after["loss"],
        "samples_before": samples_before,
        "samples_after": samples_after,
        "wall_time_s": round(time.time() - t0, 1),
        "outputs": {
            "output_dir": str(out),
            "metrics": str(out / "metrics.jsonl"),
            "loss_curve": str(out / "loss_curve.png"),
            "checkpoints": str(checkpointer.directory),
            "hf_model": str(hf_dir),
            "lora_adapter": str(adapter_dir) if adapter_dir else None,
            "summary": str(out / "summary.json"),
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\n[sft] held-out assistant-token loss: {before['loss']:.4f} -> {after['loss']:.4f} after "
        f"{result.step} steps in {summary['wall_time_s']:.0f}s\n[sft] hf_model: {hf_dir}",
        flush=True,
    )
    for s in samples_after[:2]:
        print(f"  Q: {s['question']}\n  A: {s['answer']!r}", flush=True)
    return summary
