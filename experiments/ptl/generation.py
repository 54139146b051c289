"""Generation-based metric for PTL rows: greedy GSM8K accuracy on the real rows in ``../shared/data``.

The rows (``gsm8k/test.jsonl``, 300 of the 1,319 test problems) are read only when present; a fresh
clone without them skips the metric (``gsm8k_tasks`` returns ``[]`` and the runner says so). They are
never trained on. The prompt is the GRPO runner's (question + "give only the final number inside
\\boxed{}"), answers are extracted and compared with the GRPO math rewards' ``extract_answer`` /
``answers_equal`` (math-verify), so the numbers are comparable with the GRPO evaluation.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from flax import nnx
from tqdm.auto import tqdm

from experiments.grpo.evaluate import real_math_rows, shared_data_dir
from experiments.grpo.rewards.math import answers_equal, extract_answer
from experiments.grpo.tasks import Task


def gsm8k_tasks(n: int) -> list[Task]:
    """The first ``n`` GSM8K test rows from ``../shared/data`` (or ``$JAXLAB_SHARED_DATA``); [] when absent."""
    if n <= 0 or shared_data_dir() is None:
        return []
    tasks = real_math_rows("gsm8k", n)
    if len(tasks) < n:
        raise ValueError(f"data.gsm8k_rows: asked for {n} rows, the shared data has {len(tasks)}")
    return tasks


def grade(text: str, gold: str) -> float:
    """1.0 when the completion's final answer is math-equivalent to ``gold``."""
    pred = extract_answer(text)
    return float(pred is not None and answers_equal(pred, gold))


def encode_prompts(
    tasks: Sequence[Task], tokenizer: Any, encode: Callable[[str], Sequence[int]], prompt_width: int
) -> list[list[int]]:
    """Prompt token ids (chat template when there is a tokenizer); raises when one exceeds ``prompt_width``."""
    if tokenizer is not None:
        prompts = [
            tokenizer.encode(
                tokenizer.apply_chat_template(t.messages(), add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )
            for t in tasks
        ]
    else:
        prompts = [list(encode(f"{t.messages()[0]['content']}\n")) for t in tasks]
    longest = max((len(p) for p in prompts), default=0)
    if longest > prompt_width:
        raise ValueError(
            f"data.gsm8k_prompt_width: the longest GSM8K prompt has {longest} tokens, more than {prompt_width}"
        )
    return [list(p) for p in prompts]


def gsm8k_metric(
    tasks: Sequence[Task],
    prompts: Sequence[Sequence[int]],
    tokenizer: Any,
    *,
    max_new_tokens: int,
    batch_size: int,
    prompt_width: int,
) -> Callable[[tuple], dict]:
    """``split -> {"name": "gsm8k", "correct": [0/1 per task]}``: greedy decoding, one padded prompt shape.

    ``prompts`` come from :func:`encode_prompts`. They are left-padded to ``prompt_width`` tokens (one
    compiled program for every batch and every pruned model of the same shape); the last batch is filled
    with copies of the first prompt, not scored.
    """
    from jaxlab.generate import generate

    tasks = list(tasks)
    if len(prompts) != len(tasks):
        raise ValueError(f"gsm8k_metric: {len(tasks)} tasks but {len(prompts)} prompts")

    def metric(split: tuple) -> dict:
        model = nnx.merge(*split)
        correct: list[float] = []
        for start in tqdm(range(0, len(tasks), batch_size), desc="eval gsm8k (greedy)", unit="batch", leave=False):
            chunk = prompts[start : start + batch_size]
            fill = batch_size - len(chunk)
            out = generate(
                model,
                tokenizer,
                [list(p) for p in chunk] + [list(prompts[0])] * fill,
                max_new_tokens=max_new_tokens,
                temperature=0.0,
                pad_to_multiple=prompt_width,
            )
            texts = (
                out.texts
                if tokenizer is not None
                else [bytes(x for x in ids if 0 < x < 256).decode("utf-8", "replace") for ids in out.token_ids]
            )
            correct += [
                grade(text, t.answer) for text, t in zip(texts[: len(chunk)], tasks[start : start + batch_size])
            ]
        return {"name": "gsm8k", "correct": correct}

    return metric
