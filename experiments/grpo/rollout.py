"""Rollouts: G sampled completions per prompt from the jaxlab KV-cache generator, as training rows.

All prompts x groups go through ``jaxlab.generate`` as one batch (one jitted prefill + decode
loop). Rows come back as a left-padded prompt block and a right-padded completion block, the
layout ``experiments.grpo.loss.completion_logps`` scores in one causal pass. Stop strings end a
row inside the jitted loop (``jaxlab.stop_strings``) at the token where the string is complete (the
token is kept, the rest is masked); the host re-checks the decoded text only as a final trim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxlab.generate import generate
from jaxlab.stop_strings import StopMatcher


@dataclass(frozen=True)
class RolloutConfig:
    """How completions are sampled (the ``rollout`` section of a GRPO config)."""

    num_generations: int = 4
    """G: completions per prompt (the group a baseline is taken over)."""
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    """Stop strings (in addition to the EOS token)."""
    prompt_bucket: int = 16
    """Prompts are left-padded to a multiple of this: one compiled generate / loss per bucket, so long
    prompts of varied length (Text2Vis tables) want a coarse bucket (256) instead of a recompile per step."""

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(f"num_generations: expected >= 2 (a group needs a baseline), got {self.num_generations}")
        if self.prompt_bucket < 1:
            raise ValueError(f"prompt_bucket: expected >= 1, got {self.prompt_bucket}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature: expected > 0 (GRPO samples; greedy groups have no spread), got {self.temperature}"
            )


@dataclass
class Rollout:
    """One batch of N = prompts x G completions, numpy, ready for the loss."""

    prompt_ids: np.ndarray  # [N, P] left-padded
    prompt_mask: np.ndarray  # [N, P]
    completion_ids: np.ndarray  # [N, C] right-padded
    completion_mask: np.ndarray  # [N, C] 1 up to and including the stop token
    texts: list[str]
    truncated: np.ndarray  # [N] bool: hit max_new_tokens without a stop
    prompt_index: np.ndarray  # [N] which prompt of the batch each row answers
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return self.completion_mask.sum(axis=1)


def _cut_at_stop(tokens: list[int], decode: Callable[[list[int]], str], stop: Sequence[str]) -> tuple[list[int], bool]:
    """Shortest prefix whose text contains a stop string; (prefix, found). The host reference of the device
    matcher, and the final trim after it: a row the device already ended costs two decodes."""
    if not stop or not any(s in decode(tokens) for s in stop):
        return tokens, False
    if not any(s in decode(tokens[:-1]) for s in stop):
        return tokens, True
    for end in range(1, len(tokens) + 1):
        if any(s in decode(tokens[:end]) for s in stop):
            return tokens[:end], True
    return tokens, False


def sample_groups(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    decode: Callable[[list[int]], str],
    eos_id: int,
    pad_id: int,
    cfg: RolloutConfig,
    key: jax.Array,
    stop_matcher: StopMatcher | None = None,
) -> Rollout:
    """Sample ``cfg.num_generations`` completions for each tokenised prompt; ``stop_matcher`` (built for
    ``cfg.stop``) ends rows on device, without it stop strings are only cut on the host afterwards."""
    g = cfg.num_generations
    rows = [list(p) for p in prompt_ids for _ in range(g)]
    out = generate(
        model,
        None,
        rows,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        key=key,
        stop_token_ids=[eos_id],
        stop_strings=stop_matcher,
        pad_to_multiple=cfg.prompt_bucket,
    )
    completions, truncated, texts = [], [], []
    for toks, reason in zip(out.token_ids, out.finish_reasons):
        toks, stopped = _cut_at_stop(list(toks), decode, cfg.stop)
        completions.append(toks)
        truncated.append(reason == "length" and not stopped)
        texts.append(decode([t for t in toks if t != eos_id]))
    b = cfg.prompt_bucket
    width = -(-max(map(len, rows)) // b) * b  # the generator's bucket: one compiled loss per bucket
    n = len(rows)
    p_ids = np.full((n, width), pad_id, np.int32)
    p_mask = np.zeros((n, width), np.int32)
    for i, r in enumerate(rows):
        p_ids[i, width - len(r) :] = r
        p_mask[i, width - len(r) :] = 1
    c_ids = np.full((n, cfg.max_new_tokens), pad_id, np.int32)
    c_mask = np.zeros((n, cfg.max_new_tokens), np.int32)
    for i, c in enumerate(completions):
        c_ids[i, : len(c)] = c
        c_mask[i, : len(c)] = 1
    return Rollout(
        prompt_ids=p_ids,
        prompt_mask=p_mask,
        completion_ids=c_ids,
        completion_mask=c_mask,
        texts=texts,
        truncated=np.asarray(truncated),
        prompt_index=np.repeat(np.arange(len(prompt_ids)), g),
        extras={"decode_steps": out.steps},
    )
