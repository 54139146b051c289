"""The four context strategies: what the verifier sees besides the candidate step.

* ``raw``             — the full trajectory so far, then the candidate step;
* ``none``            — the candidate step alone;
* ``summary``         — one LLM summary of (trajectory + candidate step);
* ``summary_current`` — an LLM summary of the trajectory, then the candidate step verbatim.
"""
from __future__ import annotations

from typing import Callable, Sequence

STRATEGIES = ("raw", "none", "summary", "summary_current")


def render_steps(steps: Sequence) -> str:
    return "\n\n".join(f"[{s.agent}, round {s.round}]\n{s.output}" for s in steps) or "(no previous steps)"


def build_contexts(strategy: str, task: str, steps: Sequence, candidates: list[str],
                   summarize: Callable[[str], str]) -> list[str]:
    """One verifier input per candidate; summaries of the shared prefix are computed once."""
    if strategy == "raw":
        prefix = render_steps(steps)
        return [f"Trajectory so far:\n{prefix}\n\nCurrent step:\n{c}" for c in candidates]
    if strategy == "none":
        return [f"Current step:\n{c}" for c in candidates]
    if strategy == "summary":
        prefix = render_steps(steps)
        return [f"Summary of the reasoning:\n{summarize(f'Task: {task}' + chr(10) + prefix + chr(10) + c)}"
                for c in candidates]
    if strategy == "summary_current":
        summary = summarize(f"Task: {task}\n{render_steps(steps)}")
        return [f"Summary of the trajectory so far:\n{summary}\n\nCurrent step:\n{c}" for c in candidates]
    raise ValueError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
