"""Load the published Text2Vis rows (CSV or JSONL) into :class:`Text2VisTask`.

The published file (HF ``mizanurr/Text2Vis``, ``Text2Vis.csv``) has the columns ``Prompt``,
``Question``, ``Answer``, ``Visualization Code``, ``Table Data``, ``set`` (``test1`` / ``test2``) and
``ID``; evaluation inputs add ``Generated Answer`` / ``Generated Code``, which are allowed and ignored
here.  Every bad row raises a ``ValueError`` that names the row, its ID and the column, because a
silently skipped row would change the benchmark's denominator.

``Table Data`` is stored as text whose exact layout the notes do not pin down, so it is accepted
as CSV, a JSON / Python-literal object (``{column: [values]}``, ``{column: {row: value}}`` or a
list of row objects) or a markdown pipe table, and normalised to CSV (``Text2VisTask.table_csv``,
what chart code reads as ``table.csv``).  The published ``Visualization Code`` is kept verbatim as
``gold_code`` (it may embed its data instead of reading ``table.csv``).
"""

from __future__ import annotations

import ast
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from experiments.text2vis.tasks import Text2VisTask

__all__ = [
    "COLUMNS",
    "load_text2vis",
    "load_text2vis_csv",
    "load_text2vis_jsonl",
    "real_text2vis_files",
    "table_text_to_csv",
    "tasks_from_rows",
]

COLUMNS = ("Prompt", "Question", "Answer", "Visualization Code", "Table Data", "set", "ID")
_SETS = ("test1", "test2")


def _frame_from_object(obj: Any) -> pd.DataFrame | None:
    if isinstance(obj, Mapping) and obj:
        values = list(obj.values())
        if all(isinstance(v, Mapping) for v in values):
            return pd.DataFrame({k: pd.Series(v) for k, v in obj.items()})
        if all(isinstance(v, (list, tuple)) for v in values):
            if len({len(v) for v in values}) != 1:
                raise ValueError("columns have different lengths")
            return pd.DataFrame(obj)
        return None
    if isinstance(obj, list) and obj and all(isinstance(r, Mapping) for r in obj):
        return pd.DataFrame(list(obj))
    return None


def _parse_structured(text: str) -> pd.DataFrame | None:
    for parse in (json.loads, ast.literal_eval):
        try:
            obj = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return _frame_from_object(obj)
    return None


def _parse_markdown(text: str) -> pd.DataFrame | None:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or not all(ln.startswith("|") for ln in lines):
        return None
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    rows = [r for r in rows if not all(set(c) <= set(":- ") and c for c in r)]  # drop the |---| rule
    header, body = rows[0], rows[1:]
    if not body or any(len(r) != len(header) for r in body):
        raise ValueError("markdown table rows have different numbers of cells")
    return pd.DataFrame(body, columns=header)


def table_text_to_csv(text: str) -> str:
    """Normalise a ``Table Data`` cell to CSV text; raises ``ValueError`` when it is not a table."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty table")
    stripped = text.strip()
    frame = None
    if stripped[0] in "{[":
        frame = _parse_structured(stripped)
    elif stripped.startswith("|"):
        frame = _parse_markdown(stripped)
    if frame is None:
        if "," not in stripped:
            raise ValueError("not CSV, JSON, a Python literal or a markdown table")
        try:
            frame = pd.read_csv(io.StringIO(stripped), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as exc:
            raise ValueError(f"unreadable CSV: {exc}") from exc
    if frame.empty or frame.shape[1] < 1:
        raise ValueError("table has no rows")
    return frame.to_csv(index=False)


def _cell(row: Mapping[str, Any], col: str, where: str) -> str:
    value = row[col]
    if value is None or (isinstance(value, float) and value != value):
        raise ValueError(f"{where}: column {col!r} is empty")
    text = value if isinstance(value, str) else str(value)
    if col != "Prompt" and not text.strip():
        raise ValueError(f"{where}: column {col!r} is empty")
    return text


def tasks_from_rows(rows: Iterable[Mapping[str, Any]], source: str = "rows") -> list[Text2VisTask]:
    """Rows with the published columns -> tasks; checks columns, splits, tables and unique IDs."""
    tasks: list[Text2VisTask] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"{source} row {i}: missing column(s) {missing}; expected {list(COLUMNS)}")
        rid = _cell(row, "ID", f"{source} row {i}")
        if isinstance(row["ID"], float) and row["ID"].is_integer():
            rid = str(int(row["ID"]))
        where = f"{source} row {i} (ID {rid!r})"
        if rid in seen:
            raise ValueError(f"{where}: column 'ID' repeats row {seen[rid]}")
        seen[rid] = i
        split = _cell(row, "set", where).strip()
        if split not in _SETS:
            raise ValueError(f"{where}: column 'set' must be one of {_SETS}, got {split!r}")
        try:
            table_csv = table_text_to_csv(_cell(row, "Table Data", where))
        except ValueError as exc:
            raise ValueError(f"{where}: column 'Table Data': {exc}") from exc
        tasks.append(
            Text2VisTask(
                id=rid,
                question=_cell(row, "Question", where),
                answer=_cell(row, "Answer", where),
                table_csv=table_csv,
                kind="text2vis",
                gold_code=_cell(row, "Visualization Code", where),
                split=split,
                prompt=_cell(row, "Prompt", where),
            )
        )
    if not tasks:
        raise ValueError(f"{source}: no rows")
    return tasks


def load_text2vis_csv(path: str | Path, splits: Iterable[str] | None = None) -> list[Text2VisTask]:
    """Read the published CSV with every cell as text (no NaN: "NA" stays a country code, not a gap)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    tasks = tasks_from_rows(frame.to_dict(orient="records"), source=str(path))
    return _keep(tasks, splits)


def load_text2vis_jsonl(path: str | Path, splits: Iterable[str] | None = None) -> list[Text2VisTask]:
    """Read JSONL whose objects carry the published columns."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {n}: not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return _keep(tasks_from_rows(rows, source=str(path)), splits)


def load_text2vis(path: str | Path, splits: Iterable[str] | None = None) -> list[Text2VisTask]:
    """Dispatch on the suffix: ``.csv`` or ``.jsonl``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return load_text2vis_csv(path, splits)
    if suffix in (".jsonl", ".json"):
        return load_text2vis_jsonl(path, splits)
    raise ValueError(f"path: expected a .csv or .jsonl Text2Vis file, got {str(path)!r}")


def _keep(tasks: list[Text2VisTask], splits: Iterable[str] | None) -> list[Text2VisTask]:
    if splits is None:
        return tasks
    wanted = tuple(splits)
    bad = [s for s in wanted if s not in _SETS]
    if bad:
        raise ValueError(f"splits: expected a subset of {_SETS}, got {bad}")
    return [t for t in tasks if t.split in wanted]


def real_text2vis_files() -> list[Path]:
    """Published Text2Vis files under ``<shared data>/text2vis`` when present ([] on a fresh clone).

    The shared data root is ``$JAXLAB_SHARED_DATA`` or ``../shared/data`` beside the checkout; its
    README lists no Text2Vis rows today, so this is normally empty and the tests use the fixture.
    """
    env = os.environ.get("JAXLAB_SHARED_DATA")
    roots = [Path(env)] if env else []
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for root in roots:
        folder = root / "text2vis"
        if folder.is_dir():
            return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".jsonl"))
    return []
