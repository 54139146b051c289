"""The Text2Vis task type shared by the data loader, the generator, the judges, the reward and the runners.

A task is a question over one table with a gold short answer and gold matplotlib code.  The model
sees the table as CSV text in the prompt; at execution time its chart code receives the same CSV
as the file ``table.csv`` in its own working directory, so generated code and gold code read the
data the same way (``pd.read_csv("table.csv")``).

The prompt follows the RL-Text2Vis released code: an R1-style instruction asking for a JSON object
``{"answer": ..., "code": ...}``, the task-specific rule that the answer must match and the code must
run, then the question body, and the closing line asking for no non-Python text before the script.
Loaded Text2Vis rows keep their published ``Prompt`` column as the body (that is what the released
trainer does); generated rows build the body from the table and the question.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["KINDS", "SPLITS", "Text2VisTask", "build_messages", "build_prompt", "task_from_dict", "task_to_dict"]

KINDS = ("extremum", "aggregate", "comparison", "trend", "correlation", "top_k", "pct_change", "text2vis")
SPLITS = ("train", "heldout", "test1", "test2")

SYSTEM_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question about a data table, and the "
    "Assistant solves it. The Assistant reasons carefully before responding, then gives the final short "
    "answer and Matplotlib code that draws a chart supporting it. Return the response as JSON:\n"
    "{\n"
    '"answer": "your short answer here",\n'
    '"code": "your Python code here"\n'
    "}"
)
TASK_INSTRUCTION = "The answer must exactly match the ground truth, and the code must run without errors."
CODE_INSTRUCTION = (
    "The table is saved as 'table.csv' in the working directory: read it with "
    "pandas.read_csv('table.csv'). The code must end with plt.show()."
)
CLOSING_INSTRUCTION = "Avoid generating any non-Python content before the actual Python script begins."


@dataclass(frozen=True)
class Text2VisTask:
    """One question over one table, with its gold answer and gold chart code.

    ``answer`` is text; a list answer is a JSON list string (``'["a", "b"]'``) so that every task
    serialises the same way.  ``template`` names the question template: held-out templates never
    occur in train, and held-out tables never occur in train either.
    """

    id: str
    question: str
    answer: str
    table_csv: str
    kind: str
    gold_code: str
    split: str
    table_name: str = ""
    template: str = ""
    prompt: str = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise TypeError(f"Text2VisTask.{f.name}: expected str, got {type(value).__name__} {value!r:.80}")
        for name in ("id", "question", "answer", "table_csv"):
            if not getattr(self, name).strip():
                raise ValueError(f"Text2VisTask.{name}: must not be empty (task id {self.id!r})")
        if self.kind not in KINDS:
            raise ValueError(f"Text2VisTask.kind: expected one of {KINDS}, got {self.kind!r} (task id {self.id!r})")
        if self.split not in SPLITS:
            raise ValueError(f"Text2VisTask.split: expected one of {SPLITS}, got {self.split!r} (task id {self.id!r})")

    def answer_value(self) -> Any:
        """The gold answer as a Python value: a list for JSON-list answers, else the text itself."""
        text = self.answer.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return self.answer
            if isinstance(value, list):
                return value
        return self.answer


def _body(task: Text2VisTask) -> str:
    if task.prompt:
        return task.prompt
    return (
        f"Table ({task.table_name or 'data'}, CSV):\n{task.table_csv.rstrip()}\n\n"
        f"Question: {task.question}\n{CODE_INSTRUCTION}"
    )


def build_prompt(task: Text2VisTask) -> str:
    """The whole instruction as one string (for completion-style models and token counting)."""
    return f"{SYSTEM_INSTRUCTION}\n{TASK_INSTRUCTION}\n\n{_body(task)}\n{CLOSING_INSTRUCTION}"


def build_messages(task: Text2VisTask) -> list[dict[str, str]]:
    """The same instruction as chat messages, split system / user the way the released trainer does."""
    return [
        {"role": "system", "content": f"{SYSTEM_INSTRUCTION}\n{TASK_INSTRUCTION}"},
        {"role": "user", "content": f"{_body(task)}\n{CLOSING_INSTRUCTION}"},
    ]


_FIELDS = tuple(f.name for f in dataclasses.fields(Text2VisTask))
_REQUIRED = tuple(f.name for f in dataclasses.fields(Text2VisTask) if f.default is dataclasses.MISSING)


def task_to_dict(task: Text2VisTask) -> dict[str, str]:
    """A JSON-ready dict with every field (one JSONL line per task)."""
    return dataclasses.asdict(task)


def task_from_dict(row: Mapping[str, Any]) -> Text2VisTask:
    """Inverse of :func:`task_to_dict`; an unknown or missing key is an error that names it."""
    if not isinstance(row, Mapping):
        raise TypeError(f"task row: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(_FIELDS))
    if unknown:
        raise ValueError(f"task row: unknown field(s) {unknown}; expected a subset of {list(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in row]
    if missing:
        raise ValueError(f"task row {row.get('id', '?')!r}: missing field(s) {missing}")
    return Text2VisTask(**dict(row))
