"""Real reward models behind the ORM and PRM verifiers: a jaxlab :class:`~jaxlab.models.reward.RewardModel`
and its tokenizer, called the way the authors' servers call theirs.

* :class:`SequenceRewardScorer` is the ``fn`` of :class:`FunctionOutcomeScorer`: each (question, response)
  conversation through the tokenizer's chat template, one score per conversation (label 0 at the last
  token), as ``vllm serve --task classify`` serves Skywork-Reward-V2.
* :class:`StepRewardScorer` is the ``fn`` of :class:`FunctionStepScorer`: the Qwen2.5-Math-PRM input
  (``prm_messages``) through the chat template, P(positive) at every ``<extra_0>`` separator, as the
  model card and ``vllm serve --task reward`` compute it.

A conversation longer than ``max_length`` tokens is a :class:`VerifierError` (counted as a fallback by the
MAS context), never silently cut: the context strategies summarise long trajectories first. Lengths are
padded up to a multiple of ``bucket`` so the jitted forward compiles a few shapes, not one per request.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.mas_prove.core import VerifierError
from experiments.mas_prove.verifiers import STEP_SEPARATOR
from jaxlab.models.reward import RewardModel, reward_model_from_hf, sequence_scores, step_probabilities


@partial(jax.jit, static_argnums=0)
def _scores(graphdef: Any, state: Any, ids: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    return nnx.merge(graphdef, state)(ids, mask)


class _Tokenized:
    def __init__(self, model: RewardModel, tokenizer: Any, max_length: int, bucket: int) -> None:
        if max_length < 1 or bucket < 1:
            raise ValueError(f"max_length and bucket must be >= 1, got {max_length}, {bucket}")
        # split once: verifiers score candidates from several threads, and a pure jitted function is thread-safe
        self.graphdef, self.state = nnx.split(model)
        self.tokenizer, self.max_length, self.bucket = tokenizer, max_length, bucket

    def encode(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) > self.max_length:
            raise VerifierError(f"reward model input has {len(ids)} tokens, more than max_length={self.max_length}")
        return ids

    def forward(self, rows: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-padded ``ids``, ``mask`` and the per-position scores ``[B, S, labels]``."""
        width = -(-max(len(r) for r in rows) // self.bucket) * self.bucket
        ids = np.zeros((len(rows), width), np.int32)
        mask = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return ids, mask, np.asarray(_scores(self.graphdef, self.state, jnp.asarray(ids), jnp.asarray(mask)))


class SequenceRewardScorer(_Tokenized):
    """``fn(conversations) -> one float each``: a sequence-classification reward model's label-0 score."""

    def __init__(self, model: RewardModel, tokenizer: Any, max_length: int = 16384, bucket: int = 64) -> None:
        super().__init__(model, tokenizer, max_length, bucket)

    def __call__(self, conversations: list[list[dict]]) -> list[float]:
        rows = [self.encode(c) for c in conversations]
        _, mask, scores = self.forward(rows)
        return [float(v) for v in np.asarray(sequence_scores(jnp.asarray(scores), jnp.asarray(mask)))[:, 0]]


class StepRewardScorer(_Tokenized):
    """``fn(prm_messages) -> P(positive) per separator``: a Qwen2.5-Math-PRM-style process reward model."""

    def __init__(
        self,
        model: RewardModel,
        tokenizer: Any,
        separator: str = STEP_SEPARATOR,
        max_length: int = 4096,
        bucket: int = 64,
    ) -> None:
        super().__init__(model, tokenizer, max_length, bucket)
        sep = tokenizer.convert_tokens_to_ids(separator)
        if sep is None or sep == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(f"separator: the tokenizer has no single token {separator!r} (the PRM's step marker)")
        self.separator_id = int(sep)

    def __call__(self, messages: list[dict]) -> list[float]:
        ids, _, scores = self.forward([self.encode(messages)])
        probs, at_sep = step_probabilities(jnp.asarray(scores), jnp.asarray(ids), self.separator_id)
        return [float(p) for p in np.asarray(probs)[np.asarray(at_sep)]]


def load_reward_scorer(kind: str, path: str) -> SequenceRewardScorer | StepRewardScorer:
    """The scorer for verifier ``kind`` (``orm``/``rm`` or ``prm``) from a local transformers folder."""
    import transformers

    model = reward_model_from_hf(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if kind in ("orm", "rm"):
        return SequenceRewardScorer(model, tokenizer)
    if kind == "prm":
        return StepRewardScorer(model, tokenizer)
    raise ValueError(f"verifier_model: only the orm/rm and prm verifiers take a reward model, not {kind!r}")
