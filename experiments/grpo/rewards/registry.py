"""Named reward functions with weights, scored concurrently.

A reward is ``fn(prompts, completions, **example_fields) -> list[float | None]``; None means the
reward does not apply to that sample and is left out of its mean (as in TRL). A reward may also
return ``(values, info)``, a dict of counts logged as ``rewards/<name>/<key>`` (the code rewards
count sandbox timeouts and crashes this way). Rewards that run code
or call a judge are slow per sample, so every function runs in its own thread of a bounded pool:
one slow function never serialises the others.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments.grpo.rewards.code import code_pass_fraction, code_tests
from experiments.grpo.rewards.math import boxed_format, math_accuracy
from experiments.text2vis.reward import rl_text2vis, rl_text2vis_format

RewardFn = Callable[..., list]

REWARDS: dict[str, RewardFn] = {
    "math_accuracy": math_accuracy,
    "boxed_format": boxed_format,
    "code_tests": code_tests,
    "code_pass_fraction": code_pass_fraction,
    "rl_text2vis": rl_text2vis,
    "rl_text2vis_format": rl_text2vis_format,
}


@dataclass(frozen=True)
class RewardSpec:
    """One reward in a run config: a registered name and its weight in the total."""

    name: str
    weight: float = 1.0


def get_reward(name: str, bound: Mapping[str, RewardFn] | None = None) -> RewardFn:
    """The function named ``name``: first among ``bound`` (rewards built at run time around a client, such as
    ``experiments.grpo.rewards.orchestra``), then the registry."""
    table = {**REWARDS, **(bound or {})}
    if name not in table:
        raise ValueError(f"rewards.name: unknown reward {name!r}; registered: {sorted(table)}")
    return table[name]


def score_all(
    specs: Sequence[RewardSpec],
    prompts: Sequence[str],
    completions: Sequence[str],
    fields: Mapping[str, Sequence[Any]],
    max_workers: int = 4,
    bound: Mapping[str, RewardFn] | None = None,
) -> tuple[list[list[float | None]], dict]:
    """Every reward on every completion: ``([F][N] rewards, per-reward mean/std metrics)``."""
    fns = [get_reward(s.name, bound) for s in specs]
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(fns)))) as pool:
        futures = [pool.submit(fn, list(prompts), list(completions), **fields) for fn in fns]
        outputs = [f.result() for f in futures]
    per_func = [out[0] if isinstance(out, tuple) else out for out in outputs]
    metrics = {
        f"rewards/{spec.name}/{k}": v
        for spec, out in zip(specs, outputs)
        if isinstance(out, tuple)
        for k, v in out[1].items()
    }
    for spec, values in zip(specs, per_func):
        if len(values) != len(completions):
            raise ValueError(f"reward {spec.name!r} returned {len(values)} values for {len(completions)} completions")
        arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        ok = arr[~np.isnan(arr)]
        metrics[f"rewards/{spec.name}/mean"] = float(ok.mean()) if ok.size else float("nan")
        metrics[f"rewards/{spec.name}/std"] = float(ok.std()) if ok.size else float("nan")
    return per_func, metrics
