"""Load the published MASBench parquet (HF ``Salesforce/MASBench``) into the generator's Problem type.

The published schema (the dataset card's ``dataset_info``; every column a string):

* ``prompt_json``       — the verl chat prompt, a JSON list of ``{"role", "content"}`` messages;
* ``reward_model_json`` — JSON ``{"style": ..., "ground_truth": ...}``; multi-answer gold is
                          ``"a1<<horizon>>a2<<horizon>>..."`` (MAS-Orchestra ``compute_score.py``);
* ``extra_info_json``   — JSON with per-row extras (``index``, and ``question`` when present: the
                          MAS-Orchestra processor reads the raw question, not the templated prompt);
* ``axis``, ``value``   — the axis name and its level (2..12); the ``combine`` config has no ``value``;
* ``data``              — the data source name.

Files sit one config per folder (``depth/test-00000-of-00001.parquet``); ``path`` may be such a file
or a folder of them.  A flat file with ``question`` / ``answer`` / ``axis`` / ``level`` columns (one a
user wrote) loads too.  Needs pandas + pyarrow, imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.masbench.generator import AXES, SEPARATOR, Problem

PUBLISHED_COLUMNS = ("reward_model_json", "extra_info_json", "prompt_json", "axis", "data")
"""Columns every published config has (all but ``combine`` add ``value``)."""
PUBLISHED_AXES = (*AXES, "combine")


def _json(raw: object, where: str, col: str) -> object:
    if not isinstance(raw, str):
        raise ValueError(f"{where}: {col}: expected a JSON string, got {type(raw).__name__}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: {col}: not valid JSON ({exc.msg})") from exc


def _question(prompt: object, extra: dict, where: str) -> str:
    if isinstance(extra.get("question"), str) and extra["question"].strip():
        return extra["question"]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"{where}: prompt_json: expected a non-empty list of chat messages, got {prompt!r:.80}")
    users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str):
        raise ValueError(f"{where}: prompt_json: no user message with string content")
    return users[-1]


def _level(raw: object, where: str, col: str) -> int:
    if raw is None or (isinstance(raw, float) and raw != raw):  # absent, or NaN in a concatenated frame
        return 0
    try:
        level = int(str(raw).strip())
    except ValueError as exc:
        raise ValueError(f"{where}: {col}: expected an integer level, got {raw!r}") from exc
    if not 2 <= level <= 12:
        raise ValueError(f"{where}: {col}: expected a level in [2, 12], got {level}")
    return level


def _published_row(row: dict, where: str, stem: str, i: int) -> Problem:
    reward = _json(row["reward_model_json"], where, "reward_model_json")
    if not isinstance(reward, dict) or "ground_truth" not in reward:
        raise ValueError(f"{where}: reward_model_json: expected an object with 'ground_truth', got {reward!r:.80}")
    extra = _json(row["extra_info_json"], where, "extra_info_json")
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: extra_info_json: expected a JSON object, got {type(extra).__name__}")
    question = _question(_json(row["prompt_json"], where, "prompt_json"), extra, where)
    axis = str(row["axis"]).strip().lower()
    if axis not in PUBLISHED_AXES:
        raise ValueError(f"{where}: axis: expected one of {list(PUBLISHED_AXES)}, got {row['axis']!r}")
    answers = tuple(a.strip() for a in str(reward["ground_truth"]).split(SEPARATOR))
    if not all(answers):
        raise ValueError(f"{where}: reward_model_json.ground_truth: empty answer in {reward['ground_truth']!r}")
    return Problem(
        f"{stem}-{extra.get('index', i)}", axis, _level(row.get("value"), where, "value"), question, answers, ()
    )


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"MASBench folder {str(path)!r} holds no .parquet files")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"MASBench parquet {str(path)!r} does not exist")
    return [path]


def load_parquet(
    path: str | Path,
    question_col: str = "question",
    answer_col: str = "answer",
    axis_col: str = "axis",
    level_col: str = "level",
    axis: str | None = None,
) -> list[Problem]:
    """Read every row into :class:`Problem` (published schema, else the flat ``question``/``answer`` one).

    ``axis`` fills the axis of a flat file without an axis column.  Ids are ``<file stem>-<index>``
    (``extra_info.index`` when the row has one).
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("loading MASBench parquet needs pandas and pyarrow: pip install pandas pyarrow") from exc
    problems: list[Problem] = []
    for f in _files(Path(path)):
        df = pd.read_parquet(f)
        stem = f"{f.parent.name}-{f.stem}" if f.parent.name in PUBLISHED_AXES else f.stem
        rows = df.to_dict("records")
        if set(PUBLISHED_COLUMNS) <= set(df.columns):
            problems += [_published_row(r, f"{f.name} row {i}", stem, i) for i, r in enumerate(rows)]
            continue
        if any(c in df.columns for c in PUBLISHED_COLUMNS):
            missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
            raise ValueError(f"{f.name}: looks like the published MASBench schema but lacks columns {missing}")
        for col in (question_col, answer_col):
            if col not in df.columns:
                raise ValueError(
                    f"{f.name}: expected the published columns {list(PUBLISHED_COLUMNS)} or a column "
                    f"{col!r}, found {list(df.columns)}"
                )
        if axis_col not in df.columns and axis is None:
            raise ValueError(f"{f.name}: no {axis_col!r} column; pass axis= one of {list(AXES)}")
        for i, row in enumerate(rows):
            ax = str(row.get(axis_col, axis)).lower()
            if ax not in AXES:
                raise ValueError(f"{f.name} row {i}: {axis_col}: expected one of {list(AXES)}, got {ax!r}")
            answers = tuple(a.strip() for a in str(row[answer_col]).split(SEPARATOR))
            level = _level(row.get(level_col), f"{f.name} row {i}", level_col)
            problems.append(Problem(f"{stem}-{i}", ax, level, str(row[question_col]), answers, ()))
    return problems
