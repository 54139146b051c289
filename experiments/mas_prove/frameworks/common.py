"""Helpers shared by the frameworks (and MAS-Orchestra's sub-agents): answer keys and majority voting."""

from __future__ import annotations

from collections import Counter

from experiments.masbench.scorer import extract_boxed, final_answer, normalize


def answer_key(text: str) -> tuple[str, ...]:
    """The response's boxed answers, normalised (else its one final answer: tag, 'The answer is', number)."""
    boxed = extract_boxed(text)
    if boxed:
        return tuple(normalize(a) for a in boxed)
    single = final_answer(text)
    return (normalize(single),) if single else ()


def majority(texts: list[str]) -> str:
    """The earliest response carrying the most common answer(s); responses without an answer never win."""
    if not texts:
        return ""
    keys = [answer_key(t) for t in texts]
    counts = Counter(k for k in keys if k)
    if not counts:
        return texts[-1]
    best = max(counts, key=lambda k: (counts[k], -keys.index(k)))
    return texts[keys.index(best)]


def consensus(texts: list[str]) -> bool:
    keys = {answer_key(t) for t in texts}
    return len(keys) == 1 and () not in keys


def numbered(texts: list[str], label: str = "Response") -> str:
    return "\n\n".join(f"{label} {i + 1}:\n{t}" for i, t in enumerate(texts))
