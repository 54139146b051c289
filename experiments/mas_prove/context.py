"""The four context strategies: what the verifier sees besides the candidate step.

The text follows the authors' hook (``decorators/decorator_base.py``): the
trajectory is ``"Step 1: ...\\n\\nStep 2: ..."`` and a candidate is
``context + "\\n" + current step`` (their servers' ``format_trajectory_for_eval``).

* ``raw``             — the full trajectory so far, then the candidate step;
* ``none``            — an empty context, then the candidate step (the hook called without a trajectory);
* ``summary``         — one summary of (trajectory + candidate step), per candidate: "Summarizing Context & Step",
  what the RM/PRM/FARE servers do in ``summary_mode="enforce"``;
* ``summary_current`` — one shared summary of the trajectory, then the candidate step verbatim: "Summarizing Context".
"""

from __future__ import annotations

from typing import Callable, Sequence

STRATEGIES = ("raw", "none", "summary", "summary_current")


def render_steps(steps: Sequence) -> str:
    """The authors' trajectory string: each step's output as ``Step i: ...``, blank-line separated."""
    return "\n\n".join(f"Step {i}: {s.output}" for i, s in enumerate(steps, 1))


def candidate_text(context: str, step: str) -> str:
    return "\n".join([context, step])


def build_contexts(
    strategy: str, task: str, steps: Sequence, candidates: list[str], summarize: Callable[[str], str]
) -> list[str]:
    """One verifier input per candidate; the shared trajectory summary (``summary_current``) is computed once."""
    if strategy == "raw":
        return [candidate_text(render_steps(steps), c) for c in candidates]
    if strategy == "none":
        return [candidate_text("", c) for c in candidates]
    if strategy == "summary":
        return [summarize(candidate_text(render_steps(steps), c)) for c in candidates]
    if strategy == "summary_current":
        summary = summarize(render_steps(steps)) if steps else ""  # nothing to summarise before the first step
        return [candidate_text(summary, c) for c in candidates]
    raise ValueError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
