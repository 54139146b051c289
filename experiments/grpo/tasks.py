"""A seeded generator of short verifiable arithmetic word problems (answer in ``\\boxed{}``).

Train and held-out problems come from disjoint seed streams and disjoint templates, so held-out
accuracy is measured on wordings the policy never trained on. Each task records its template,
operands and gold answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from jaxlab.stop_strings import byte_token_bytes, tokenizer_token_bytes

INSTRUCTION = "Solve the problem. Give only the final number inside \\boxed{}."

TRAIN_TEMPLATES = (
    ("add", "Tom has {a} apples and buys {b} more. How many apples does he have?", lambda a, b: a + b),
    ("sub", "A shelf holds {a} books. {b} are taken away. How many books are left?", lambda a, b: a - b),
    ("mul", "There are {a} boxes with {b} pens each. How many pens are there?", lambda a, b: a * b),
    ("add2", "What is {a} plus {b}?", lambda a, b: a + b),
)
HELDOUT_TEMPLATES = (
    ("add", "A farm has {a} cows and {b} sheep. How many animals are there in total?", lambda a, b: a + b),
    ("sub", "Mia had {a} stickers and gave {b} to a friend. How many stickers does she have now?", lambda a, b: a - b),
    ("mul", "A class has {a} rows of {b} desks. How many desks are there?", lambda a, b: a * b),
)


@dataclass(frozen=True)
class Task:
    question: str
    answer: str
    template: str
    split: str

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": f"{self.question}\n{INSTRUCTION}"}]

    def fields(self) -> dict[str, Any]:
        """What the rewards see of this task besides prompt and completion."""
        return {"answer": self.answer}


def make_tasks(split: str, n: int, seed: int = 0, max_operand: int = 60) -> list[Task]:
    """``n`` tasks of ``split`` ('train' or 'heldout'); the same (split, n, seed) gives the same tasks."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
    if n < 1 or max_operand < 2:
        raise ValueError(f"n and max_operand: expected n >= 1 and max_operand >= 2, got {n}, {max_operand}")
    templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    rng = random.Random(f"{split}:{seed}")
    tasks = []
    for _ in range(n):
        name, text, fn = templates[rng.randrange(len(templates))]
        a, b = rng.randint(2, max_operand), rng.randint(2, max_operand)
        if name.startswith("sub") and b > a:
            a, b = b, a
        if name == "mul":
            b = rng.randint(2, 12)
        tasks.append(Task(question=text.format(a=a, b=b), answer=str(fn(a, b)), template=name, split=split))
    return tasks


def batch_at(tasks: Sequence[Task], index: int, n: int) -> list[Task]:
    """The ``index``-th (0-based) batch of ``n`` tasks, wrapping around: a function of the index, so resume replays it."""
    first = (index * n) % len(tasks)
    return [tasks[(first + i) % len(tasks)] for i in range(n)]


@dataclass(frozen=True)
class TaskCodec:
    """How a policy reads a task and writes text: prompt ids, completion text, EOS and padding ids."""

    encode: Callable[[Task], list[int]]
    decode: Callable[[list[int]], str]
    eos_id: int
    pad_id: int
    token_bytes: Callable[[], list[bytes]] | None = None
    """Each token's bytes under ``decode`` (for stop strings matched on device); built only when asked for."""


def chat_codec(tokenizer: Any) -> TaskCodec:
    """A chat model: the task as a user turn through the tokenizer's chat template."""

    def encode(task: Task) -> list[int]:
        text = tokenizer.apply_chat_template(task.messages(), add_generation_prompt=True, tokenize=False)
        return tokenizer.encode(text, add_special_tokens=False)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return TaskCodec(
        encode,
        lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        tokenizer.eos_token_id,
        pad,
        lambda: tokenizer_token_bytes(tokenizer, skip_special_tokens=True),
    )


def byte_codec(eos_id: int = 0, max_prompt_bytes: int = 384) -> TaskCodec:
    """A tiny byte-level model (vocab 256): the last turn's UTF-8 bytes in (at most ``max_prompt_bytes``, the
    tail), bytes out; a long system turn (MAS-Orchestra's format) would not fit a tiny model's positions."""
    return TaskCodec(
        lambda task: list(task.messages()[-1]["content"].encode("utf-8"))[-max_prompt_bytes:],
        lambda ids: bytes(t for t in ids if 0 < t < 256).decode("utf-8", "replace"),
        eos_id,
        eos_id,
        lambda: byte_token_bytes(256, eos_id),
    )
