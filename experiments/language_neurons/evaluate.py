"""Per-language metrics of a (deactivated or trained) model: perplexity with intervals, MGSM accuracy.

Perplexity is token-level over each language's held-out sentences (one sentence per row, see
:func:`experiments.language_neurons.samples.sentence_batches`), with a 95% bootstrap interval over
sentences; :func:`ratio_to` compares two models on the *same* sentences with a paired bootstrap
(``experiments.ptl.evaluate``). MGSM accuracy is greedy decoding with the GRPO prompt (question +
"give only the final number inside \\boxed{}") graded by math-verify equivalence, reusing the PTL
GSM8K metric; the rows are evaluation data, never trained on.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from experiments.grpo.tasks import Task
from experiments.ptl.evaluate import bootstrap_mean, bootstrap_ppl, paired_ratio, window_nll
from experiments.ptl.generation import encode_prompts, gsm8k_metric

Split = tuple


def language_ppl(
    split: Split, batches: Mapping[str, Sequence[dict]], progress: bool = True
) -> dict[str, dict[str, Any]]:
    """``{lang: {"ppl", "ci", "tokens", "sentences", "nll": [...], "tok": [...]}}`` for ``split``."""
    out = {}
    for lang, bs in batches.items():
        nll, tok = window_nll(split, bs, desc=f"eval {lang} perplexity", progress=progress)
        b = bootstrap_ppl(nll, tok)
        out[lang] = {
            "ppl": b["ppl"] if math.isfinite(b["ppl"]) else float("inf"),
            "ci": list(b["ci"]),
            "tokens": b["tokens"],
            "sentences": b["windows"],
            "nll": nll.tolist(),
            "tok": tok.tolist(),
        }
    return out


def ratio_to(a: Mapping[str, dict], b: Mapping[str, dict]) -> dict[str, dict[str, Any]]:
    """Per language ``ppl_a / ppl_b`` on the same sentences with a paired bootstrap interval."""
    out = {}
    for lang in a:
        if a[lang]["tok"] != b[lang]["tok"]:
            raise ValueError(f"ratio_to: {lang!r} was evaluated on different sentences in the two results")
        r = paired_ratio(a[lang]["nll"], b[lang]["nll"], a[lang]["tok"])
        out[lang] = {"ratio": r["ratio"], "ci": list(r["ci"]), "significant": r["significant"]}
    return out


def strip_per_sentence(result: Mapping[str, dict]) -> dict[str, dict]:
    """``result`` without the per-sentence arrays (for tables and the JSON summary)."""
    return {lang: {k: v for k, v in r.items() if k not in ("nll", "tok")} for lang, r in result.items()}


def mgsm_metrics(
    rows: Mapping[str, Sequence[tuple[str, str]]],
    tokenizer: Any,
    encode: Callable,
    *,
    max_new_tokens: int,
    batch_size: int,
    prompt_width: int,
) -> dict[str, Callable[[Split], dict]]:
    """``{lang: split -> {"name", "correct"}}`` greedy MGSM accuracy per language (prompts built once)."""
    metrics = {}
    for lang, items in rows.items():
        tasks = [Task(q, a, f"mgsm_{lang}", "eval") for q, a in items]
        try:
            prompts = encode_prompts(tasks, tokenizer, encode, prompt_width)
        except ValueError as exc:
            raise ValueError(f"mgsm.prompt_width ({lang}): {exc}") from None
        metrics[lang] = gsm8k_metric(
            tasks, prompts, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size, prompt_width=prompt_width
        )
    return metrics


def mgsm_accuracy(split: Split, metrics: Mapping[str, Callable[[Split], dict]]) -> dict[str, dict[str, Any]]:
    """``{lang: {"acc", "ci", "n", "correct"}}`` of ``split`` (empty when MGSM is off)."""
    out = {}
    for lang, metric in metrics.items():
        correct = [float(c) for c in metric(split)["correct"]]
        m = bootstrap_mean(correct)
        out[lang] = {"acc": m["mean"], "ci": list(m["ci"]), "n": m["n"], "correct": correct}
    return out
