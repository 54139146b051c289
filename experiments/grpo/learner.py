"""One GRPO step on the jaxlab core: rollout -> rewards -> advantages -> mu passes of clipped updates.

Pure pieces are jitted once per shape bucket: the per-token log-probs (old policy, reference) and
the micro-batch gradient of ``loss.policy_loss``. The old-policy forward runs only when mu > 1: with
one pass per rollout batch the policy is still the sampling policy, so the loss detaches its own
log-probs (ratio 1, as TRL does) and a forward per micro-batch is saved. The reference model exists only when beta > 0:
it is the caller's initial parameter tree, held, while the learner trains its own copy (whose
buffers the update donates); at beta = 0 the caller's tree is not held. Optional ``grad_masks``
(PTL's prune masks) zero the gradient and the update of pruned units, so they stay exactly zero.
With a ``mesh`` the policy (and so the reference, which is the same tree) is sharded by the
jaxlab logical-axis rules, micro-batches are split over the data axes and activations are pinned
inside the jitted functions; the step's numbers equal the single-device step's. The mesh may span
several processes (``jax.distributed``): every host then runs the same step on the same prompts and
key, the rollout is one computation over all devices whose tokens every host fetches whole, every
host scores the same rewards, and the micro-batches are assembled as global arrays.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.grpo.advantages import group_advantages, weighted_rewards
from experiments.grpo.loss import LossConfig, completion_logps, policy_loss
from experiments.grpo.rewards import RewardSpec, get_reward, score_all
from experiments.grpo.rollout import Rollout, RolloutConfig, sample_groups
from jaxlab.stop_strings import StopMatcher
from jaxlab.sharding import activation_sharding, batch_sharding, init_on_mesh, shard_state
from jaxlab.train.optim import OptimConfig, make_optimizer
from jaxlab.train.step import TrainState


@dataclass(frozen=True)
class GRPOConfig:
    """The algorithm's knobs beyond the loss (the ``grpo`` section of a run config)."""

    num_iterations: int = 1
    """mu: optimisation passes over each rollout batch, importance-weighted against the old policy."""
    micro_batch: int = 8
    """Rows per gradient micro-batch (gradients are accumulated over the rollout batch)."""
    scale_rewards: str = "group"
    filter_zero_std: bool = False
    reward_workers: int = 4

    def __post_init__(self) -> None:
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations: expected >= 1, got {self.num_iterations}")
        if self.micro_batch < 1:
            raise ValueError(f"micro_batch: expected >= 1, got {self.micro_batch}")


@partial(jax.jit, static_argnames=("graphdef", "temperature"))
def _logps(graphdef, params, rest, batch, temperature):
    model = nnx.merge(graphdef, params, rest)
    logps, _ = completion_logps(
        model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"], temperature
    )
    return logps


@partial(jax.jit, static_argnames=("graphdef", "cfg"))
def _grad(graphdef, params, rest, batch, cfg, scale):
    def f(p):
        loss, stats = policy_loss(p, rest, graphdef, batch, cfg)
        return loss * scale, stats

    (loss, stats), grads = jax.value_and_grad(f, has_aux=True)(params)
    return loss, stats, grads


@partial(jax.jit, static_argnames=("tx",), donate_argnums=(1,))
def _apply(tx, state, grads, masks):
    if masks is not None:
        grads = jax.tree.map(lambda g, m: g * m, grads, masks)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if masks is not None:
        updates = jax.tree.map(lambda u, m: u * m, updates, masks)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), optax.global_norm(grads)


class GRPOLearner:
    """Holds the policy's state and runs :meth:`step` on batches of prompts."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        decode: Callable[[list[int]], str],
        eos_id: int,
        pad_id: int,
        rewards: Sequence[RewardSpec],
        rollout: RolloutConfig,
        loss: LossConfig,
        optim: OptimConfig,
        grpo: GRPOConfig = GRPOConfig(),
        grad_masks: Any = None,
        mesh: Any = None,
        token_bytes: Sequence[bytes] | None = None,
        reward_fns: Mapping[str, Callable] | None = None,
    ):
        """``token_bytes[t]``: the bytes token ``t`` adds to ``decode`` (``jaxlab.stop_strings``); needed when
        ``rollout.stop`` is set, so stop strings end rows inside the jitted generation loop. ``reward_fns``:
        reward functions built for this run (bound to a client), looked up by name before the registry."""
        if not rewards:
            raise ValueError("rewards: expected at least one reward function")
        self.reward_fns = dict(reward_fns or {})
        for spec in rewards:
            get_reward(spec.name, self.reward_fns)
        if loss.loss_type == "dr_grpo" and loss.max_completion_length != rollout.max_new_tokens:
            raise ValueError(
                f"loss.max_completion_length: dr_grpo normalises by the rollout's max_new_tokens "
                f"({rollout.max_new_tokens}), got {loss.max_completion_length}"
            )
        if rollout.stop and token_bytes is None:
            raise ValueError(
                "token_bytes: rollout.stop needs each token's bytes to match stop strings on device "
                "(jaxlab.stop_strings.tokenizer_token_bytes / byte_token_bytes)"
            )
        self.stop_matcher = (
            StopMatcher.build(rollout.stop, token_bytes, model.config.vocab_size) if rollout.stop else None
        )
        self.graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
        self.mesh = mesh
        if mesh is not None:
            params, self.rest = shard_state(params, mesh), shard_state(self.rest, mesh)
            if grad_masks is not None:
                grad_masks = jax.device_put(grad_masks, jax.tree.map(lambda p: p.sharding, params))
        self.tx = make_optimizer(optim)
        # the update donates the policy's buffers, so the policy is a copy the learner owns: the caller's
        # arrays (shared with other tracks of a PTL run, and the frozen reference at beta > 0) stay valid
        self.ref_params = params if loss.beta > 0 else None
        params = jax.tree.map(jnp.copy, params)
        # on a mesh every optimizer leaf (the step counter too) is placed on it: one-device leaves would mix
        # with mesh arrays in a restore, and with several processes they would not be global arrays at all
        self.state = TrainState(
            params, self.tx.init(params) if mesh is None else init_on_mesh(self.tx.init, params, mesh=mesh)
        )
        self.decode, self.eos_id, self.pad_id = decode, eos_id, pad_id
        self.rewards, self.rollout_cfg, self.loss_cfg, self.cfg = list(rewards), rollout, loss, grpo
        self.grad_masks = grad_masks
        self.last_samples: list[dict] = []
        """The latest step's rows: prompt, completion, each reward and the total (a TRL-style completions log)."""

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.state.params, self.rest)

    def _on_mesh(self):
        return activation_sharding(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def rollout(self, prompt_ids: Sequence[Sequence[int]], key: jax.Array) -> Rollout:
        with self._on_mesh():
            return sample_groups(
                self.model(),
                prompt_ids,
                self.decode,
                self.eos_id,
                self.pad_id,
                self.rollout_cfg,
                key,
                self.stop_matcher,
            )

    def step(
        self,
        prompt_ids: Sequence[Sequence[int]],
        prompt_texts: Sequence[str],
        fields: Mapping[str, Sequence[Any]],
        key: jax.Array,
    ) -> dict[str, float]:
        """One rollout batch and its ``num_iterations`` updates; returns the step's metrics."""
        t0 = time.perf_counter()
        ro = self.rollout(prompt_ids, key)
        t_roll = time.perf_counter() - t0
        g = self.rollout_cfg.num_generations
        rep = {k: [v for v in vals for _ in range(g)] for k, vals in fields.items()}
        rep["completion_lengths"] = [int(n) for n in ro.lengths]
        prompts = [t for t in prompt_texts for _ in range(g)]
        per_func, metrics = score_all(self.rewards, prompts, ro.texts, rep, self.cfg.reward_workers, self.reward_fns)
        total = weighted_rewards(per_func, [s.weight for s in self.rewards])
        adv = group_advantages(total, g, scale_rewards=self.cfg.scale_rewards, filter_zero_std=self.cfg.filter_zero_std)
        keep = np.flatnonzero(adv.keep)
        self.last_samples = [
            {
                "prompt": p,
                "completion": c,
                "reward": float(r),
                "advantage": float(a),
                "truncated": bool(tr),
                **{s.name: v for s, v in zip(self.rewards, vals)},
            }
            for p, c, r, a, tr, *vals in zip(prompts, ro.texts, total, adv.advantages, ro.truncated, *per_func)
        ]
        metrics.update(
            {
                "reward": float(total.mean()),
                "reward_std": float(total.std()),
                "frac_reward_zero_std": adv.frac_zero_std,
                "filtered_groups": int((~adv.keep).sum() // g),
                "completion_length/mean": float(ro.lengths.mean()),
                "completion_length/max": float(ro.lengths.max()),
                "truncated_fraction": float(ro.truncated.mean()),
                "rollout_s": t_roll,
                "rollout_tokens_per_s": float(ro.lengths.sum() / max(t_roll, 1e-9)),
            }
        )
        t1 = time.perf_counter()
        if keep.size:
            with self._on_mesh():
                metrics.update(self._update(ro, adv.advantages, keep))
        metrics["update_s"] = time.perf_counter() - t1
        return metrics

    def _update(self, ro: Rollout, advantages: np.ndarray, keep: np.ndarray) -> dict[str, float]:
        rows = {
            "prompt_ids": ro.prompt_ids[keep],
            "prompt_mask": ro.prompt_mask[keep],
            "completion_ids": ro.completion_ids[keep],
            "completion_mask": ro.completion_mask[keep],
            "advantages": advantages[keep],
        }
        micro = self._micro_batches(rows)
        temp = self.loss_cfg.temperature
        for mb in micro:
            if self.cfg.num_iterations > 1:  # the sampling policy's log-probs, fixed for all mu passes
                mb["old_logps"] = _logps(self.graphdef, self.state.params, self.rest, mb, temp)
            # mu = 1: the one pass is on-policy, policy_loss detaches its own log-probs (no extra forward)
            if self.ref_params is not None:
                mb["ref_logps"] = _logps(self.graphdef, self.ref_params, self.rest, mb, temp)
        totals = {
            "num_items": jnp.float32(rows["completion_mask"].sum()),
            "num_rows": jnp.float32(rows["advantages"].shape[0]),
        }
        # grpo / dapo / dr_grpo normalise by whole-batch counts, so micro-batch losses add up;
        # bnpo is a per-micro-batch token mean, averaged over micro-batches as TRL does.
        scale = 1.0 / len(micro) if self.loss_cfg.loss_type == "bnpo" else 1.0
        logs: dict[str, list[float]] = {}
        for _ in range(self.cfg.num_iterations):
            grads_sum, loss_sum = None, 0.0
            for mb in micro:
                loss, stats, grads = _grad(
                    self.graphdef, self.state.params, self.rest, dict(mb, **totals), self.loss_cfg, jnp.float32(scale)
                )
                grads_sum = grads if grads_sum is None else jax.tree.map(jnp.add, grads_sum, grads)
                loss_sum += float(loss)
                for k, v in stats.items():
                    logs.setdefault(k, []).append(float(v))
            self.state, gnorm = _apply(self.tx, self.state, grads_sum, self.grad_masks)
            logs.setdefault("loss", []).append(loss_sum)
            logs.setdefault("grad_norm", []).append(float(gnorm))
        return {k: float(np.mean(v)) for k, v in logs.items()}

    def _micro_batches(self, rows: dict[str, np.ndarray]) -> list[dict[str, jax.Array]]:
        n, m = rows["advantages"].shape[0], self.cfg.micro_batch
        out = []
        for start in range(0, n, m):
            chunk = {k: v[start : start + m] for k, v in rows.items()}
            short = m - chunk["advantages"].shape[0]
            if short:  # pad the last micro-batch to the compiled shape with fully masked rows
                chunk = {k: np.concatenate([v, np.zeros((short,) + v.shape[1:], v.dtype)]) for k, v in chunk.items()}
                chunk["prompt_mask"][-short:, -1] = 1
            if self.mesh is None:
                out.append({k: jnp.asarray(v) for k, v in chunk.items()})
            else:  # every host holds the whole chunk: each places the rows of its own devices
                out.append({k: _global(v, batch_sharding(self.mesh, v.ndim, batch_size=m)) for k, v in chunk.items()})
        return out


def _global(value: np.ndarray, sharding: Any) -> jax.Array:
    """``value`` (the same on every process) as one array over ``sharding``'s devices, on any process count."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
