"""One track of the prune-tune loop: score -> prune -> tune -> evaluate -> checkpoint, per stage.

The model stays at full shape with masks applied (pruned weights are exact
zeros): every stage then reuses the same compiled scoring, training and eval
programs, which on a CPU costs far less than recompiling a smaller model per
stage. Compaction happens once, at export. After each stage the params, masks,
data-iterator position and result rows go into an orbax checkpoint, so a
restarted run resumes after the last finished stage; inside a stage the tuner's own
checkpoints (``TrainerTuner``, every ``tune.checkpoint_every`` steps) take it to the
last saved step of that stage: the stage is re-scored and re-pruned (deterministic, so
the same masks, which the tuner checks) and its tuning continues from that step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from experiments.ptl.schedule import ScheduleConfig
from experiments.ptl.tune import Budget, Stage, Tuner
from jaxlab.train import memory
from jaxlab.train.checkpoint import CheckpointConfig, Checkpointer
from jaxlab.train.step import TrainState, copy_shared, split_model
from jaxlab.transforms import Masks, apply_masks, compact_config, kept, param_count, prune_lowest, unit_scores

EvalFn = Callable[[tuple], dict]


@dataclasses.dataclass
class TrackResult:
    rows: list[dict]
    model: nnx.Module
    masks: Masks
    resumed_from: int | None


def masks_to_tree(m: Masks) -> dict:
    return {"mlp": list(m.mlp), "heads": list(m.heads), "kv_heads": list(m.kv_heads), "layers": m.layers}


def tree_to_masks(t: dict) -> Masks:
    return Masks(mlp=tuple(t["mlp"]), heads=tuple(t["heads"]), kv_heads=tuple(t["kv_heads"]), layers=t["layers"])


def pruned_indices(m: Masks) -> dict:
    """Per layer, the indices of the pruned units (JSON-ready): which neurons / heads a run removed."""
    per = lambda ms: [np.flatnonzero(np.asarray(x) == 0).tolist() for x in ms]  # noqa: E731
    return {
        "mlp": per(m.mlp),
        "heads": per(m.heads),
        "kv_heads": per(m.kv_heads),
        "layers": np.flatnonzero(np.asarray(m.layers) == 0).tolist(),
    }


CalibFn = Callable[[int], tuple[list[dict], list[dict]]]


def run_track(
    track: str,
    model: nnx.Module,
    masks: Masks,
    kept_after: Sequence[int],
    schedule: ScheduleConfig,
    tuner: Tuner | None,
    budget: Budget,
    calib: list[dict] | CalibFn,
    english: list[dict] | None,
    eval_fn: EvalFn,
    ckpt_dir: Path,
    progress: bool = True,
    eval_pruned: bool = False,
    eval_final_only: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> TrackResult:
    """Run the stages of one track; returns a row per stage (params, eval metrics, tokens used).

    ``calib`` is either fixed (task batches, with ``english``) or ``stage -> (task batches, English
    batches)`` for fresh samples per stage (``english`` is then unused). ``eval_pruned`` also evaluates
    each stage right after pruning, before tuning (``row["pruned"]``; the no-tune baseline), at the cost
    of one more evaluation. ``eval_final_only`` evaluates only the last stage (earlier rows carry no
    metrics). ``seed + stage`` seeds the ``random`` criterion.
    """
    cfg = model.config
    graphdef, base_params, rest = split_model(model)
    # The track's own parameters: the leaves apply_masks leaves alone (embeddings, norms) are the base model's
    # arrays, and a donating tuner (TrainerTuner(donate=True)) deletes what it is handed, so those are copied
    # once here; the base model (every track's starting point and the distillation teacher) stays intact.
    params = copy_shared(apply_masks(base_params, masks, cfg.head_dim), base_params)
    rows: list[dict] = []
    ckpt = Checkpointer(ckpt_dir, CheckpointConfig(every_steps=1, keep=1, async_save=False, resume=True))
    start, resumed_from = 0, None
    try:
        if ckpt.latest_step() is not None:
            restored = ckpt.restore(TrainState(params, masks_to_tree(masks)), rest)
            params, masks, rest = restored.state.params, tree_to_masks(restored.state.opt_state), restored.rest
            rows, start = list(restored.extra["rows"]), restored.step
            resumed_from = start
            if restored.data_state is not None and hasattr(tuner, "set_state"):
                tuner.set_state(restored.data_state)
            log(f"[ptl] {track}: resumed after stage {start} of {len(kept_after)}")
        bar = tqdm(total=len(kept_after), initial=start, desc=f"{track} stages", unit="stage", disable=not progress)
        tokens = rows[-1]["tokens"] if rows else 0
        for k in range(start + 1, len(kept_after) + 1):
            split = (graphdef, params, rest)
            now = kept(masks, schedule.unit)
            n = (min(now) if isinstance(now, list) else now) - kept_after[k - 1]
            task_b, eng_b = calib(k) if callable(calib) else (calib, english)
            with memory.phase("score + prune"):
                scores = unit_scores(
                    split,
                    schedule.unit,
                    schedule.criterion,
                    task_b,
                    masks=masks,
                    english=eng_b,
                    top_frac=schedule.top_frac,
                    signed=schedule.ptl_signed,
                    select=schedule.ptl_select,
                    n_remove=n,
                    seed=seed + k,
                )
                masks = prune_lowest(masks, schedule.unit, scores, n)
                params = apply_masks(params, masks, cfg.head_dim)
            untuned = tuner is None or budget.steps == 0
            scored = k == len(kept_after) or not eval_final_only
            pruned = eval_fn((graphdef, params, rest)) if scored and (eval_pruned or untuned) else None
            if tuner is not None and budget.steps > 0:
                stage = Stage(index=k, stages=len(kept_after), track=track, masks=masks, head_dim=cfg.head_dim)
                # the tuner may donate these params (see Tuner): nothing below reads them again
                tuned = tuner(nnx.merge(graphdef, params, rest), stage, budget)
                _, new_params, rest = split_model(tuned)
                params = apply_masks(new_params, masks, cfg.head_dim)
                tokens += budget.tokens
                metrics = eval_fn((graphdef, params, rest)) if scored else {}
            else:
                metrics = pruned if scored else {}
            row = {
                "track": track,
                "stage": k,
                "params": param_count(compact_config(cfg, masks)),
                "kept": kept_after[k - 1],
                "tokens": tokens,
                **metrics,
            }
            history = getattr(tuner, "last_history", None) if not untuned else None
            if history is not None:  # this call's tuning steps (after a mid-stage resume: only the rest)
                row["tune_losses"] = [
                    [h["step"], float(h["loss"])] for h in history if h.get("split", "train") == "train" and "loss" in h
                ]  # GRPO rows carry no split
                row["tune_resumed_from"] = getattr(tuner, "last_resumed_from", None)
            if pruned is not None:
                row["pruned"] = pruned
            rows.append(row)
            data_state = tuner.get_state() if hasattr(tuner, "get_state") else None
            with memory.phase("stage checkpoint"):
                ckpt.save(
                    k,
                    TrainState(params, masks_to_tree(masks)),
                    rest,
                    data_state=data_state,
                    extra={"rows": _jsonable(rows)},
                )
            if hasattr(tuner, "stage_done"):
                tuner.stage_done(k)
            bar.update(1)
            if not scored:
                log(
                    f"[ptl] {track} stage {k}/{len(kept_after)}: kept {row['kept']} {schedule.unit}, "
                    f"{row['params'] / 1e6:.2f}M params (not evaluated: data.eval_stages=final), "
                    f"{tokens} tuning tokens"
                )
                continue
            bar.set_postfix(code_ppl=f"{row['code_ppl']:.2f}", text_ppl=f"{row['text_ppl']:.2f}", refresh=False)
            before = f"(pruned, untuned: {pruned['code_ppl']:.2f} / {pruned['text_ppl']:.2f}) " if pruned else ""
            log(
                f"[ptl] {track} stage {k}/{len(kept_after)}: kept {row['kept']} {schedule.unit}, "
                f"{row['params'] / 1e6:.2f}M params, code / text ppl {before}{row['code_ppl']:.2f} / "
                f"{row['text_ppl']:.2f}, acc {row['accuracy']:.3f}, {tokens} tuning tokens"
            )
        bar.close()
    finally:
        ckpt.close()
    return TrackResult(rows, nnx.merge(graphdef, params, rest), masks, resumed_from)


def _jsonable(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append({k: (float(v) if isinstance(v, (float, np.floating, jnp.ndarray)) else v) for k, v in r.items()})
    return out
