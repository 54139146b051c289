"""Format and length rewards: a regex match, a JSON object with required keys, DAPO's overlong shaping."""

from __future__ import annotations

import json
import re
from typing import Sequence


def regex_format(pattern: str):
    """A reward that is 1.0 when the whole completion matches ``pattern`` (re.DOTALL), else 0.0."""
    compiled = re.compile(pattern, re.DOTALL)

    def reward(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float | None]:
        return [float(compiled.fullmatch(c.strip()) is not None) for c in completions]

    reward.__name__ = "regex_format"
    return reward


def json_keys(required: Sequence[str]):
    """1.0 when the completion is a JSON object holding every ``required`` key with a string value."""

    def reward(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float | None]:
        out: list[float | None] = []
        for c in completions:
            try:
                obj = json.loads(c.strip())
            except json.JSONDecodeError:
                out.append(0.0)
                continue
            out.append(float(isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in required)))
        return out

    reward.__name__ = "json_keys"
    return reward


def overlong_penalty(max_length: int, buffer: int) -> "callable":
    """DAPO's soft overlong punishment on completion token counts (0 inside ``max_length - buffer``,
    then linear down to -1 at ``max_length``, -1 beyond)."""
    if not 0 < buffer <= max_length:
        raise ValueError(f"buffer: expected 0 < buffer <= max_length ({max_length}), got {buffer}")

    def reward(
        prompts: Sequence[str], completions: Sequence[str], completion_lengths: Sequence[int] | None = None, **_: object
    ) -> list[float | None]:
        if completion_lengths is None:
            raise ValueError("overlong_penalty: needs completion_lengths (token counts) from the trainer")
        safe = max_length - buffer
        out: list[float | None] = []
        for n in completion_lengths:
            out.append(0.0 if n <= safe else ((safe - n) / buffer if n <= max_length else -1.0))
        return out

    reward.__name__ = "overlong_penalty"
    return reward
