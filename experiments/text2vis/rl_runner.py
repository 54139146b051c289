"""RL-Text2Vis runner: ``jaxlab run configs/rl_text2vis_smollm2.yaml [key=value ...]``.

GRPO (the ``experiments.grpo`` learner: rollouts, group advantages, clipped updates) on Text2Vis
train tasks with the released multi-objective reward (:mod:`experiments.text2vis.reward`): the
``rl_text2vis`` main reward plus the ``rl_text2vis_format`` reward, weight 1 each as TRL sums them.
Tasks come from the seeded vega generator (``data.source: generated``, t2v-data's
``experiments.text2vis.generator``) or from JSONL files of tasks (``data.source: jsonl``).

Judges are programmatic by default (answer match, code intent, the structure-based chart judge);
``client.kind=http`` (with ``client.model``, ``client.vision_model``, ``client.base_url``) sends
the released text-judge and VLM prompts to an OpenAI-compatible endpoint instead.

Before and after training, greedy replies on the held-out tasks are scored with the same reward
and summarised (:mod:`experiments.text2vis.rl_eval`): format rate, code found, execution success,
answer match, chart scores, with Wilson 95% intervals.  Writes under ``output_dir``:
``metrics.jsonl`` + ``tensorboard/`` (every reward part per step), ``samples.jsonl`` (every
completion with all its reward parts), ``eval_before.jsonl`` / ``eval_after.jsonl``,
``results.json``, ``reward_curve.png``, ``parts_curve.png`` (format / execution / answer rates per
step, :mod:`experiments.text2vis.rl_plot`) and ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Literal

import jax
from tqdm.auto import tqdm

from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig
from experiments.grpo.plot import plot_reward_curve
from experiments.grpo.rewards import RewardSpec, get_reward
from experiments.grpo.rollout import RolloutConfig
from experiments.grpo.runner import ModelSection, _load
from experiments.grpo.tasks import batch_at
from experiments.text2vis.judges import LLMTextJudge, LLMVisualJudge
from experiments.text2vis.reward import RLText2VisReward, configure, parts_dict
from experiments.text2vis.rl_eval import evaluate_policy, t2v_codec
from experiments.text2vis.rl_plot import plot_parts_curve
from experiments.text2vis.tasks import Text2VisTask, task_from_dict
from jaxlab.config import ConfigError, require_positive, to_dict
from jaxlab.llm import ClientConfig, make_client
from jaxlab.runs import JsonlLog, claim_output_dir
from jaxlab.distributed import DistributedConfig
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.run_setup import refuse_multiprocess
from jaxlab.train.metrics import MetricsWriter, read_jsonl
from jaxlab.train.optim import OptimConfig


@dataclasses.dataclass(frozen=True)
class DataSection:
    source: Literal["generated", "jsonl"] = "generated"
    train_tasks: int = 256
    heldout_tasks: int = 32
    seed: int = 0
    train_path: str | None = None
    """``source: jsonl``: one task per line (``experiments.text2vis.tasks.task_to_dict``)."""
    heldout_path: str | None = None

    def __post_init__(self) -> None:
        require_positive(**{"data.train_tasks": self.train_tasks, "data.heldout_tasks": self.heldout_tasks})
        if self.source == "jsonl" and not (self.train_path and self.heldout_path):
            raise ConfigError("data.train_path / data.heldout_path: required with data.source: jsonl")


@dataclasses.dataclass(frozen=True)
class JudgeClient:
    """``kind: programmatic`` (no model) or ``http``: the text judge and the VLM behind one endpoint."""

    kind: Literal["programmatic", "http"] = "programmatic"
    model: str = "gpt-4o"
    vision_model: str | None = None
    """The VLM's model name at the same endpoint (default: ``model``)."""
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_concurrency: int = 8
    cache_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class ExecSection:
    timeout_s: float = 15.0
    memory_mb: int = 1024
    workers: int = 2
    """Completions executed and judged at once (each execution is one sandbox subprocess)."""


@dataclasses.dataclass(frozen=True)
class EvalSection:
    max_new_tokens: int = 160
    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class Config:
    output_dir: str = "runs/rl_text2vis_smollm2"
    overwrite: bool = False
    steps: int = 12
    prompts_per_step: int = 2
    seed: int = 0
    progress: bool = True
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    rollout: RolloutConfig = RolloutConfig(num_generations=8, max_new_tokens=160)
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig(
        learning_rate=1e-5, warmup_steps=0, decay_steps=1000, weight_decay=0.0, grad_clip_norm=0.1
    )
    grpo: GRPOConfig = GRPOConfig()
    rewards: tuple[RewardSpec, ...] = (RewardSpec("rl_text2vis", 1.0), RewardSpec("rl_text2vis_format", 1.0))
    parser: Literal["json", "released"] = "json"
    """How the reward reads a reply's answer and code (experiments.text2vis.parse; ``released``: the
    released regexes, which score correct JSON-list answers 0)."""
    client: JudgeClient = JudgeClient()
    execution: ExecSection = ExecSection()
    eval: EvalSection = EvalSection()
    checkpoint: CheckpointConfig = CheckpointConfig(every_steps=10)
    distributed: DistributedConfig | None = None
    """Accepted so every runner reads the same keys; more than one process is refused (see ``run``)."""

    def __post_init__(self) -> None:
        require_positive(steps=self.steps, prompts_per_step=self.prompts_per_step)
        for spec in self.rewards:
            try:
                get_reward(spec.name)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.data.train_tasks < self.prompts_per_step:
            raise ConfigError(
                f"data.train_tasks: expected >= prompts_per_step ({self.prompts_per_step}), got {self.data.train_tasks}"
            )


def _read_jsonl(path: str, n: int, what: str) -> list[Text2VisTask]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: {path!r} does not exist")
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return [task_from_dict(r) for r in rows[:n]]


def load_tasks(data: DataSection) -> tuple[list[Text2VisTask], list[Text2VisTask]]:
    """(train, held-out) tasks; held-out tables and templates never occur in train (the generator's split)."""
    if data.source == "jsonl":
        return (
            _read_jsonl(data.train_path, data.train_tasks, "data.train_path"),
            _read_jsonl(data.heldout_path, data.heldout_tasks, "data.heldout_path"),
        )
    from experiments.text2vis.generator import make_tasks

    return make_tasks("train", data.train_tasks, data.seed), make_tasks("heldout", data.heldout_tasks, data.seed)


def build_reward(cfg: Config) -> RLText2VisReward:
    """The reward with the configured judges (programmatic, or the released prompts over HTTP)."""
    text = visual = None
    if cfg.client.kind == "http":
        c = cfg.client
        base = dict(
            kind="http",
            base_url=c.base_url,
            api_key_env=c.api_key_env,
            timeout_s=c.timeout_s,
            max_concurrency=c.max_concurrency,
            cache_dir=c.cache_dir,
        )
        text = LLMTextJudge(make_client(ClientConfig(model=c.model, **base)))
        visual = LLMVisualJudge(make_client(ClientConfig(model=c.vision_model or c.model, **base)))
    e = cfg.execution
    return RLText2VisReward(
        text, visual, timeout_s=e.timeout_s, memory_mb=e.memory_mb, max_workers=e.workers, parser=cfg.parser
    )


OUTPUTS = (
    "metrics.jsonl",
    "samples.jsonl",
    "tensorboard",
    "checkpoints",
    "results.json",
    "reward_curve.png",
    "parts_curve.png",
    "eval_before.jsonl",
    "eval_after.jsonl",
)
RESUMABLE = ("steps", "progress", "checkpoint")


def run(cfg: Config) -> dict:
    refuse_multiprocess(
        cfg,
        "RL text2vis",
        "it trains with the one-process GRPO learner, and every process would "
        "call the judge and execute the charts itself",
    )
    out = Path(cfg.output_dir)
    claim_output_dir(cfg, OUTPUTS, resume_key="checkpoint.resume", ignore=RESUMABLE)
    t0 = time.time()
    model, tok, _ = _load(cfg.model, tiny_positions=4096)  # the GRPO runner's loader; t2v_codec reads tasks
    codec = t2v_codec(tok)
    train, heldout = load_tasks(cfg.data)
    reward = configure(build_reward(cfg))
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
    )
    checkpointer = Checkpointer(out / "checkpoints", cfg.checkpoint)
    start, before = 0, None
    if checkpointer.resume_step() is not None:
        restored = checkpointer.restore(learner.state, learner.rest)
        learner.state, learner.rest, start = restored.state, restored.rest, restored.step
        before = restored.extra.get("before")
    t_eval = time.time()
    if before is None:
        before = evaluate_policy(
            learner.model(),
            codec,
            heldout,
            reward,
            out / "eval_before.jsonl",
            max_new_tokens=cfg.eval.max_new_tokens,
            batch_size=cfg.eval.batch_size,
            prompt_bucket=cfg.rollout.prompt_bucket,
        )
    before_s = time.time() - t_eval
    metrics = MetricsWriter(out, resume_step=start if start else None)
    samples_path = out / "samples.jsonl"
    if samples_path.exists():  # a resumed run replays from its checkpoint: drop the later steps' rows
        kept = [r for r in read_jsonl(samples_path) if r.get("step", 0) <= start]
        samples_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    samples = JsonlLog(samples_path)
    base_key = jax.random.key(cfg.seed)
    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress, desc="rl_text2vis", unit="step")
    t_train = time.time()
    try:
        for step in range(start + 1, cfg.steps + 1):
            batch = batch_at(train, step - 1, cfg.prompts_per_step)
            m = learner.step(
                [codec.encode(t) for t in batch],
                [t.question for t in batch],
                {"task": batch},
                jax.random.fold_in(base_key, step),
            )
            metrics.write(step, "train", m)
            parts = reward.last_parts
            for i, row in enumerate(learner.last_samples):
                task = batch[i // cfg.rollout.num_generations]
                extra = parts_dict(parts[i]) if len(parts) == len(learner.last_samples) else {}
                samples.write(
                    {
                        "step": step,
                        "task_id": task.id,
                        "kind": task.kind,
                        **row,
                        **{f"part_{k}": v for k, v in extra.items()},
                    }
                )
            bar.update(1)
            bar.set_postfix(reward=f"{m['reward']:.3f}")
            if checkpointer.should_save(step, final=step == cfg.steps):
                checkpointer.save(
                    step, learner.state, learner.rest, data_state={"step": step}, extra={"before": before}
                )
    finally:
        bar.close()
        metrics.close()
        samples.close()
        checkpointer.close()
    train_s = time.time() - t_train
    t_eval = time.time()
    after = evaluate_policy(
        learner.model(),
        codec,
        heldout,
        reward,
        out / "eval_after.jsonl",
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        prompt_bucket=cfg.rollout.prompt_bucket,
    )
    result = {
        "before": before,
        "after": after,
        "steps": cfg.steps,
        "resumed_from": start or None,
        "train_tasks": len(train),
        "heldout_tasks": len(heldout),
        "seconds": {
            "total": time.time() - t0,
            "eval_before": before_s,
            "train": train_s,
            "eval_after": time.time() - t_eval,
        },
        "judge_fallbacks": reward.fallback_counts(),
        "config": to_dict(cfg),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    plot_reward_curve(out / "metrics.jsonl", out / "reward_curve.png", [s.name for s in cfg.rewards])
    plot_parts_curve(out)
    print(json.dumps({"before": before, "after": after}, indent=2))
    return result
