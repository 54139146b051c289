"""Chat SFT data for a fresh clone: conversations generated from the stdlib, or the user's JSONL / parquet.

``stdlib-docstrings`` (the default) asks, for every documented public function of
this interpreter's standard library, "What does ``module.func(signature)`` do?"
and answers with the first paragraph of its docstring. It is generated on the
spot (nothing downloaded, nothing from ``../shared/data``, no evaluation set),
under the Python Software Foundation licence like the stdlib itself, and split
into train / held-out by the same path hash as the pretraining corpus, so a
module's questions are all on one side.

A path ending in ``.jsonl`` is read as rows ``{"messages": [{"role", "content"}, ...]}``;
``.parquet`` as a table with a ``messages`` column of such lists.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Iterator, Sequence

from jaxlab.train import data

BUILTIN = "stdlib-docstrings"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _first_paragraph(doc: str, max_chars: int) -> str | None:
    para = doc.strip().split("\n\n", 1)[0]
    text = " ".join(line.strip() for line in para.splitlines()).strip()
    if len(text) < 20 or len(text) > max_chars:
        return None
    return text


def docstring_conversations(files: Sequence[Path], root: Path, max_answer_chars: int = 400) -> Iterator[list[dict]]:
    """One user/assistant exchange per documented public top-level function or method in ``files``."""
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:  # a few stdlib files are templates or Python-2 fixtures
            continue
        module = _module_name(path, root)
        if any(part.startswith("_") for part in module.split(".")):
            continue
        scopes = [("", tree)] + [
            (node.name + ".", node)
            for node in tree.body
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
        ]
        for prefix, scope in scopes:
            for node in scope.body:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                    continue
                answer = _first_paragraph(ast.get_docstring(node) or "", max_answer_chars)
                if answer is None:
                    continue
                args = ast.unparse(node.args)
                question = f"What does `{module}.{prefix}{node.name}({args})` do?"
                yield [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def write_jsonl(conversations: Sequence[list[dict]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    return path


def _from_parquet(path: Path) -> list[list[dict]]:
    import pandas as pd

    frame = pd.read_parquet(path)
    if "messages" not in frame.columns:
        raise ValueError(f"data.source: {str(path)!r} has no 'messages' column (columns: {list(frame.columns)})")
    return [[{"role": str(m["role"]), "content": str(m["content"])} for m in row] for row in frame["messages"]]


def prepare(source: str, out_dir: Path, heldout_fraction: float, max_examples: int, seed: int) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``heldout.jsonl`` under ``out_dir`` and return their paths.

    The conversations are validated by :func:`jaxlab.train.data.load_chat_jsonl` when read.
    """
    if source == BUILTIN:
        root = data.stdlib_root()
        train_files, held_files = data.split_files(data.stdlib_python_files(), heldout_fraction, root)
        train = list(docstring_conversations(train_files, root))
        held = list(docstring_conversations(held_files, root))
    else:
        path = Path(source)
        if path.suffix not in (".jsonl", ".parquet"):
            raise ValueError(f"data.source: expected {BUILTIN!r}, a .jsonl or a .parquet file, got {source!r}")
        rows = data.load_chat_jsonl(path) if path.suffix == ".jsonl" else _from_parquet(path)
        random.Random(seed).shuffle(rows)
        n_held = max(1, round(len(rows) * heldout_fraction))
        if n_held >= len(rows):
            raise ValueError(
                f"data.source: {len(rows)} conversations leave none to train on after holding out "
                f"{n_held}; lower data.heldout_fraction"
            )
        held, train = rows[:n_held], rows[n_held:]
    rng = random.Random(seed)
    rng.shuffle(train)
    return write_jsonl(train[:max_examples], out_dir / "train.jsonl"), write_jsonl(held, out_dir / "heldout.jsonl")
