"""Load the published MASBench parquet (when a user has it) into the generator's Problem type."""
from __future__ import annotations

from pathlib import Path

from experiments.masbench.generator import AXES, SEPARATOR, Problem


def load_parquet(path: str | Path, question_col: str = "question", answer_col: str = "answer",
                 axis_col: str = "axis", level_col: str = "level", axis: str | None = None) -> list[Problem]:
    """Read rows into :class:`Problem`; multi-answer gold is split on ``<<horizon>>``.

    ``axis`` fills the axis when the file is one axis per parquet (no axis
    column).  Needs pandas + pyarrow, imported only here.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("loading MASBench parquet needs pandas and pyarrow: pip install pandas pyarrow") from exc
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MASBench parquet {str(path)!r} does not exist")
    df = pd.read_parquet(path)
    for col in (question_col, answer_col):
        if col not in df.columns:
            raise ValueError(f"{path.name}: expected a column {col!r}, found {list(df.columns)}")
    if axis_col not in df.columns and axis is None:
        raise ValueError(f"{path.name}: no {axis_col!r} column; pass axis= one of {list(AXES)}")
    problems = []
    for i, row in enumerate(df.to_dict("records")):
        ax = str(row.get(axis_col, axis)).lower()
        if ax not in AXES:
            raise ValueError(f"{path.name} row {i}: {axis_col}: expected one of {list(AXES)}, got {ax!r}")
        answers = tuple(a.strip() for a in str(row[answer_col]).split(SEPARATOR))
        level = int(row[level_col]) if level_col in row and row[level_col] is not None else 0
        problems.append(Problem(f"{path.stem}-{i}", ax, level, str(row[question_col]), answers, ()))
    return problems
