"""One GRPO step in jaxlab vs in TRL's GRPOTrainer, side by side on this machine.

    python -m experiments.grpo.bench --output_dir runs/grpo_bench

Both frameworks start from the same SmolLM2-135M-Instruct weights (float32) and take the same
steps: the same ``prompts x G`` seeded arithmetic problems per step (experiments.grpo.tasks, the
chat template applied), the same max new tokens, temperature, dapo loss with beta 0, one
optimisation pass, AdamW at the same learning rate and the same math-verify accuracy reward.
A step = rollout (sample G completions per prompt, score them, group advantages, old log-probs)
+ update (loss, backward, optimizer step).

* jaxlab: ``GRPOLearner.step``, which reports its rollout and update seconds.
* TRL: the trainer's own ``_generate_and_score_completions`` (rollout) then ``compute_loss``,
  ``backward``, gradient clipping and the trainer's optimizer step (update), called directly: this
  is the body of TRL's training loop without the Trainer's logging and callbacks.

Steps alternate between the frameworks (``experiments.bench.timing.time_interleaved``, one
``--warmup`` untimed steps each, which include jaxlab's compilation for each prompt-length bucket), so load on the shared machine
hits both alike. Each figure is the median of ``--repeats`` steps with min and max; a figure
whose spread exceeds ``--max_spread`` prints ``noisy`` and gets no ratio. All columns are measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from experiments.bench.timing import DEFAULT_MAX_SPREAD, MIN_REPEATS, fmt, fmt_ratio, rate, ratio, time_interleaved
from experiments.grpo.learner import GRPOConfig, GRPOLearner
from experiments.grpo.loss import LossConfig
from experiments.grpo.rewards import RewardSpec
from experiments.grpo.rewards.math import math_accuracy
from experiments.grpo.rollout import RolloutConfig
from experiments.grpo.tasks import batch_at, chat_codec, make_tasks
from jaxlab.train.optim import OptimConfig


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--num_generations", type=int, default=4, help="G")
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--learning_rate", type=float, default=1e-6)
    p.add_argument("--repeats", type=int, default=MIN_REPEATS, help="timed steps per framework")
    p.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed steps per framework first (jaxlab compiles once per prompt-length bucket)",
    )
    p.add_argument("--max_spread", type=float, default=DEFAULT_MAX_SPREAD)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.prompts < 1 or args.num_generations < 2 or args.max_new_tokens < 1:
        p.error("--prompts >= 1, --num_generations >= 2 and --max_new_tokens >= 1 are required")
    return args


class JaxlabStep:
    """A GRPOLearner on the jaxlab SmolLM2; each call is one step on the next batch of problems."""

    def __init__(self, model, tokenizer, tasks, args):
        self.codec, self.tasks, self.args = chat_codec(tokenizer), tasks, args
        self.learner = GRPOLearner(
            model,
            decode=self.codec.decode,
            eos_id=self.codec.eos_id,
            pad_id=self.codec.pad_id,
            rewards=[RewardSpec("math_accuracy", 1.0)],
            rollout=RolloutConfig(
                num_generations=args.num_generations, max_new_tokens=args.max_new_tokens, temperature=args.temperature
            ),
            loss=LossConfig(loss_type="dapo", beta=0.0),
            optim=OptimConfig(
                learning_rate=args.learning_rate,
                warmup_steps=0,
                decay_steps=10_000,
                weight_decay=0.0,
                grad_clip_norm=1.0,
            ),
            grpo=GRPOConfig(micro_batch=args.prompts * args.num_generations),
        )
        self.index, self.rollout_s, self.update_s, self.tokens = 0, [], [], []

    def __call__(self) -> None:
        batch = batch_at(self.tasks, self.index, self.args.prompts)
        m = self.learner.step(
            [self.codec.encode(t) for t in batch],
            [t.question for t in batch],
            {"answer": [t.answer for t in batch]},
            jax.random.fold_in(jax.random.key(self.args.seed), self.index),
        )
        self.index += 1
        self.rollout_s.append(m["rollout_s"])
        self.update_s.append(m["update_s"])
        self.tokens.append(m["completion_length/mean"] * self.args.prompts * self.args.num_generations)


def _trl_reward(prompts, completions, answer, **_):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return math_accuracy(prompts, texts, answer=answer)


class TrlStep:
    """TRL's GRPOTrainer on the same weights; each call is its rollout + loss + optimizer step."""

    def __init__(self, folder, tokenizer, tasks, args, workdir: Path):
        import torch
        import transformers
        import trl
        from datasets import Dataset

        self.torch = torch
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
        n = args.prompts * args.num_generations
        config = trl.GRPOConfig(
            output_dir=str(workdir),
            num_generations=args.num_generations,
            per_device_train_batch_size=n,
            max_completion_length=args.max_new_tokens,
            temperature=args.temperature,
            top_p=1.0,
            learning_rate=args.learning_rate,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1.0,
            beta=0.0,
            loss_type="dapo",
            epsilon=0.2,
            num_iterations=1,
            report_to=[],
            use_cpu=True,
            bf16=False,
            seed=args.seed,
            max_steps=10_000,
        )
        rows = [{"prompt": t.messages(), "answer": t.answer} for t in tasks]
        self.trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=[_trl_reward],
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        self.trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
        self.trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; one micro-batch here
        self.trainer.model.train()
        self.tasks, self.args = tasks, args
        self.index, self.rollout_s, self.update_s, self.tokens = 0, [], [], []

    def __call__(self) -> None:
        g = self.args.num_generations
        batch = [
            {"prompt": t.messages(), "answer": t.answer}
            for t in batch_at(self.tasks, self.index, self.args.prompts)
            for _ in range(g)
        ]
        self.index += 1
        trainer, model = self.trainer, self.trainer.model
        t0 = time.perf_counter()
        inputs = trainer._generate_and_score_completions(batch)
        t1 = time.perf_counter()
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        self.rollout_s.append(t1 - t0)
        self.update_s.append(t2 - t1)
        self.tokens.append(float(inputs["completion_mask"].sum()))


def _figures(step, rows: int, max_spread: float) -> dict:
    total = [r + u for r, u in zip(step.rollout_s, step.update_s)]
    return {
        "step": rate(1.0, total, max_spread),
        "rollout": rate(1.0, step.rollout_s, max_spread),
        "update": rate(1.0, step.update_s, max_spread),
        "rollout_tokens": rate(float(np.median(step.tokens)), step.rollout_s, max_spread),
        "seconds": {"step": total, "rollout": step.rollout_s, "update": step.update_s},
        "rows": rows,
    }


def main(argv=None) -> dict:
    args = _parse(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from jaxlab.models import load_smollm2
    from jaxlab.models.smollm2 import smollm2_folder

    model, tokenizer = load_smollm2()
    tasks = make_tasks("train", 512, args.seed, 20)
    steps = {
        "jaxlab": JaxlabStep(model, tokenizer, tasks, args),
        "trl": TrlStep(smollm2_folder(), tokenizer, tasks, args, out / "trl_workdir"),
    }
    time_interleaved(steps, repeats=args.repeats, warmup=args.warmup)
    for s in steps.values():  # drop the warm-up steps' split
        w = args.warmup
        s.rollout_s, s.update_s, s.tokens = s.rollout_s[w:], s.update_s[w:], s.tokens[w:]
    rows = args.prompts * args.num_generations
    fig = {name: _figures(s, rows, args.max_spread) for name, s in steps.items()}
    # a rate of 1 step per median seconds: steps/s; the speedup is jaxlab steps/s over TRL's
    speed = {part: ratio(fig["jaxlab"][part], fig["trl"][part]) for part in ("step", "rollout", "update")}
    print(
        f"GRPO step, SmolLM2-135M f32, {args.prompts} prompts x G={args.num_generations}, "
        f"{args.max_new_tokens} new tokens, median [min-max] of {args.repeats} steps, all measured"
    )
    print(f"{'':8} {'steps/s':>24} {'rollout/s':>24} {'update/s':>24} {'rollout tok/s':>24}")
    for name, f in fig.items():
        print(
            f"{name:8} {fmt(f['step'], 4):>24} {fmt(f['rollout'], 4):>24} {fmt(f['update'], 4):>24} "
            f"{fmt(f['rollout_tokens'], 1):>24}"
        )
    print(
        f"{'jaxlab/trl':10} {fmt_ratio(speed['step']):>22} {fmt_ratio(speed['rollout']):>24} "
        f"{fmt_ratio(speed['update']):>24}"
    )
    result = {
        "args": vars(args),
        "speedup": speed,
        "figures": {
            n: {k: (v.as_dict() if hasattr(v, "as_dict") else v) for k, v in f.items()} for n, f in fig.items()
        },
    }
    (out / "grpo_bench.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'grpo_bench.json'}")
    return result


if __name__ == "__main__":
    main()
