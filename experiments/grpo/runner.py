"""GRPO runner: ``jaxlab run configs/grpo_smollm2_math.yaml [key=value ...]``.

Trains a policy with GRPO on seeded verifiable arithmetic problems (experiments.grpo.tasks),
reports greedy accuracy on held-out generated problems and on real GSM8K / MATH-500 rows before
and after. With ``task: mas_orchestra`` the policy is MAS-Orchestra's orchestrator instead: each
completion is a whole multi-agent system, executed with the frozen sub-agents of ``mas.client`` and
rewarded 0.1 x executes + 0.9 x correct (experiments.grpo.mas_tasks, rewards/orchestra.py); the
before/after report is the held-out parse / validity / execution rate and accuracy. It writes under ``output_dir``: ``metrics.jsonl`` + ``tensorboard/`` (every reward's
mean/std, KL, clip fractions, entropy, lengths, tokens/s per step), ``reward_curve.png``,
``results.json``, ``samples.jsonl`` (every completion with its rewards, per step) and ``checkpoints/`` (policy, optimizer, step; a killed run resumes and replays
the same per-step rewards, since prompts and PRNG keys are functions of the step index).
``run.json`` records the config: another run's results in ``output_dir`` stop the run before it
loads anything, unless ``overwrite=true`` (see ``jaxlab.runs.claim_output_dir``).

Multi-process (``distributed.*`` with a ``mesh`` over every process's devices, math tasks): each
host runs the same steps (same prompts and keys); the rollout and the updates are computed over the
whole mesh (experiments.grpo.learner), the checkpoints are written by all hosts together and
process 0 alone writes the logs, samples, plot and results (jaxlab.train.run_setup).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal

import jax
from tqdm.auto import tqdm

from experiments.grpo.evaluate import accuracy, real_math_rows
from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig
from experiments.grpo.plot import plot_reward_curve
from experiments.grpo.rewards import RewardSpec, get_reward
from experiments.grpo.mas_tasks import OrchestraSection, evaluate_orchestrator, orchestra_rewards, orchestra_tasks
from experiments.grpo.rewards.orchestra import ORCHESTRA_REWARDS, OrchestraRewards
from experiments.grpo.rollout import RolloutConfig
from experiments.grpo.tasks import TaskCodec, batch_at, byte_codec, chat_codec, make_tasks
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.runs import JsonlLog
from jaxlab.sharding import MeshConfig
from jaxlab.distributed import DistributedConfig, initialize, is_primary
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.run_setup import build_mesh, primary_metrics, start_run
from jaxlab.train.metrics import read_jsonl
from jaxlab.train.optim import OptimConfig


@dataclasses.dataclass(frozen=True)
class ModelSection:
    name: Literal["smollm2-135m-instruct", "tiny-llama"] = "smollm2-135m-instruct"
    """``tiny-llama``: a random 2-layer byte-level model (tests, smoke runs)."""
    path: str | None = None
    """A local Hugging Face folder (config.json, safetensors, tokenizer with a chat template) instead of ``name``."""
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DataSection:
    train_tasks: int = 512
    heldout_tasks: int = 64
    seed: int = 0
    max_operand: int = 60


@dataclasses.dataclass(frozen=True)
class EvalSection:
    gsm8k_rows: int = 0
    """Real GSM8K test rows from ../shared/data scored before/after (0: none; absent data: skipped)."""
    math500_rows: int = 0
    max_new_tokens: int = 96
    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str = "runs/grpo_smollm2_math"
    overwrite: bool = False
    """Delete the results of another run (different config) in ``output_dir``; false: refuse to start."""
    steps: int = 30
    prompts_per_step: int = 4
    seed: int = 0
    progress: bool = True
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    rollout: RolloutConfig = RolloutConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig(
        learning_rate=1e-6, warmup_steps=0, decay_steps=1000, weight_decay=0.0, grad_clip_norm=0.1
    )
    grpo: GRPOConfig = GRPOConfig()
    rewards: tuple[RewardSpec, ...] = (RewardSpec("math_accuracy", 1.0), RewardSpec("boxed_format", 0.2))
    task: Literal["math", "mas_orchestra"] = "math"
    mas: OrchestraSection = OrchestraSection()
    """The MASBench problems and the sub-agents (``task: mas_orchestra`` only)."""
    eval: EvalSection = EvalSection()
    checkpoint: CheckpointConfig = CheckpointConfig(every_steps=10)
    mesh: MeshConfig | None = None
    """Device mesh for the policy and reference (``mesh.data=-1 mesh.fsdp=2 ...``); None: one device."""
    distributed: DistributedConfig | None = None
    """Multi-process run (``jax.distributed``; needs ``mesh``, math tasks only); ``None``: one process."""

    def __post_init__(self) -> None:
        require_positive(steps=self.steps, prompts_per_step=self.prompts_per_step)
        bound = dict.fromkeys(ORCHESTRA_REWARDS) if self.task == "mas_orchestra" else {}
        for spec in self.rewards:
            try:
                get_reward(spec.name, bound)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.data.train_tasks < self.prompts_per_step:
            raise ConfigError(
                f"data.train_tasks: expected >= prompts_per_step ({self.prompts_per_step}), got {self.data.train_tasks}"
            )


def _load(section: ModelSection, tiny_positions: int = 512) -> tuple[Any, Any, TaskCodec]:
    """``(model, tokenizer or None, codec)``; ``tiny_positions``: the byte model's context (Text2Vis prompts
    are a few thousand bytes)."""
    if section.name == "tiny-llama" and section.path is None:
        from jaxlab.models import init_model
        from jaxlab.models.config import tiny_config

        return (
            init_model(tiny_config("llama", num_layers=2, max_position_embeddings=tiny_positions), section.seed),
            None,
            byte_codec(),
        )
    from jaxlab.models.pretrained import load_pretrained

    model, tok = load_pretrained(section.path or section.name)
    return model, tok, chat_codec(tok)


def _evaluate(cfg: Config, model, tok, encode, heldout, orchestra: OrchestraRewards | None = None) -> dict[str, dict]:
    if orchestra is not None:
        return {
            "heldout_masbench": evaluate_orchestrator(
                model,
                tok,
                heldout,
                orchestra,
                max_new_tokens=cfg.eval.max_new_tokens,
                batch_size=cfg.eval.batch_size,
                encode=None if tok is not None else encode,
            )
        }
    sets = {
        "heldout_generated": heldout,
        "gsm8k": real_math_rows("gsm8k", cfg.eval.gsm8k_rows),
        "math500": real_math_rows("math500", cfg.eval.math500_rows),
    }
    return {
        name: accuracy(
            model,
            tok,
            tasks,
            max_new_tokens=cfg.eval.max_new_tokens,
            batch_size=cfg.eval.batch_size,
            encode=None if tok is not None else encode,
        )
        for name, tasks in sets.items()
        if tasks
    }


def _samples_log(path: Path, resumed_at: int) -> JsonlLog:
    """The completions log, keeping only steps up to the checkpoint a resumed run replays from."""
    if path.exists():
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= resumed_at]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return JsonlLog(path)


OUTPUTS = (
    "config.yaml",
    "metrics.jsonl",
    "samples.jsonl",
    "tensorboard",
    "checkpoints",
    "results.json",
    "reward_curve.png",
)
RESUMABLE = ("steps", "progress", "checkpoint", "mesh", "distributed")
"""Keys a resumed run may change: how far to train, the progress bar, how often to checkpoint, and the
mesh and process group (the checkpoint restores onto the learner's shardings, whatever they are)."""


def _check_multiprocess(cfg: Config) -> None:
    """What a multi-process run needs, raised by every host alike (each knows the process count)."""
    n = jax.process_count()
    if n == 1:
        return
    if cfg.mesh is None:
        raise ConfigError(
            f"mesh: a multi-process GRPO run ({n} processes) needs a mesh over every process's "
            f"devices, e.g. mesh.data=-1 (or mesh.data=2 mesh.fsdp=4)"
        )
    if cfg.task == "mas_orchestra":
        raise ConfigError(
            f"task: mas_orchestra runs in one process only (every process would run the sub-agent "
            f"systems itself); this run has {n} processes: drop the distributed section"
        )


def run(cfg: Config, subagent_client: Any = None) -> dict:
    """Train and report; ``subagent_client`` overrides ``mas.client`` (tests pass a scripted one)."""
    initialize(cfg.distributed)  # before anything touches a device
    _check_multiprocess(cfg)
    out = start_run(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=RESUMABLE)
    t0 = time.time()
    model, tok, codec = _load(cfg.model)
    orchestra = None
    if cfg.task == "mas_orchestra":
        train, heldout = orchestra_tasks("train", cfg.mas), orchestra_tasks("heldout", cfg.mas)
        orchestra = orchestra_rewards(cfg.mas, subagent_client, cfg.seed)
    else:
        train = make_tasks("train", cfg.data.train_tasks, cfg.data.seed, cfg.data.max_operand)
        heldout = make_tasks("heldout", cfg.data.heldout_tasks, cfg.data.seed, cfg.data.max_operand)
    learner = GRPOLearner(
        model,
        decode=codec.decode,
        eos_id=codec.eos_id,
        pad_id=codec.pad_id,
        rewards=cfg.rewards,
        rollout=cfg.rollout,
        loss=cfg.loss,
        optim=cfg.optim,
        grpo=cfg.grpo,
        mesh=build_mesh(cfg.mesh),
        token_bytes=codec.token_bytes() if cfg.rollout.stop and codec.token_bytes else None,
        reward_fns=orchestra.functions() if orchestra is not None else None,
    )
    checkpointer = Checkpointer(out / "checkpoints", cfg.checkpoint)
    start = 0
    before = None
    if checkpointer.resume_step() is not None:
        restored = checkpointer.restore(learner.state, learner.rest)
        learner.state, learner.rest, start = restored.state, restored.rest, restored.step
        before = restored.extra.get("before")
    if before is None:
        before = _evaluate(cfg, learner.model(), tok, codec.encode, heldout, orchestra)
    metrics = primary_metrics(out, start if start else None)  # process 0 writes the logs
    samples = _samples_log(out / "samples.jsonl", start) if is_primary() else None
    base_key = jax.random.key(cfg.seed)
    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress or not is_primary(), desc="grpo", unit="step")
    try:
        for step in range(start + 1, cfg.steps + 1):
            batch = batch_at(train, step - 1, cfg.prompts_per_step)
            fields = {k: [t.fields()[k] for t in batch] for k in batch[0].fields()}
            m = learner.step(
                [codec.encode(t) for t in batch],
                [t.question for t in batch],
                fields,
                jax.random.fold_in(base_key, step),
            )
            if metrics is not None:
                metrics.write(step, "train", m)
            if orchestra is not None:  # how far each system got, beside its reward
                for row, res in zip(learner.last_samples, orchestra.last):
                    row.update(stage=res.stage, error=res.error[:200])
            for row in learner.last_samples if samples is not None else ():
                samples.write({"step": step, **row})
            bar.update(1)
            bar.set_postfix(reward=f"{m['reward']:.3f}")
            if checkpointer.should_save(step, final=step == cfg.steps):
                checkpointer.save(
                    step, learner.state, learner.rest, data_state={"step": step}, extra={"before": before}
                )
    finally:
        bar.close()
        for log in (metrics, samples):
            if log is not None:
                log.close()
        checkpointer.close()
    after = _evaluate(cfg, learner.model(), tok, codec.encode, heldout, orchestra)
    result = {
        "before": before,
        "after": after,
        "steps": cfg.steps,
        "resumed_from": start or None,
        "seconds": time.time() - t0,
        "config": to_dict(cfg),
    }
    if not is_primary():
        return result
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    plot_reward_curve(out / "metrics.jsonl", out / "reward_curve.png", [s.name for s in cfg.rewards])
    print(json.dumps({"before": before, "after": after}, indent=2))
    return result
