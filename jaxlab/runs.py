"""Run bookkeeping every runner shares, so that results are never lost or mixed.

* :func:`claim_output_dir`, called first by every runner, writes
  ``<output_dir>/run.json`` (the resolved config and its fingerprint). An
  ``output_dir`` that already holds results is resumed only when they come
  from the same config (fingerprints match and resuming is on); otherwise the
  run refuses to start, naming the keys that differ, unless ``overwrite=true``,
  which deletes those results first (no stale checkpoint step survives).
* :class:`JsonlLog` appends per-item records to a JSONL file (never truncating
  it) and gives back the records already there, so a resumed run skips them.
* :func:`fail_if_no_call_succeeded` turns a run in which every model call
  failed into a :class:`RunFailedError` with a summary of the failures, and
  ``jaxlab run`` into a non-zero exit, instead of a table of zeros.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from jaxlab.config import ConfigError, to_dict

RUN_FILE = "run.json"
NOT_RESULTS = ("output_dir", "overwrite")
"""Keys left out of every fingerprint: where the results live, and whether to replace them."""
_ABSENT = "<absent>"


class RunDirError(ConfigError):
    """``output_dir`` holds results this run must not resume, mix with, or delete."""


class RunFailedError(RuntimeError):
    """The run finished but produced nothing worth reporting (e.g. every model call failed)."""


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def _ignored(key: str, ignore: Iterable[str]) -> bool:
    return any(key == i or key.startswith(i + ".") for i in ignore)


def fingerprinted(config: dict, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``{dotted key: value}`` of the keys that decide a run's results (``ignore`` and :data:`NOT_RESULTS` dropped)."""
    ignore = (*NOT_RESULTS, *ignore)
    plain = json.loads(json.dumps(config, default=str))
    return {k: v for k, v in _flat(plain).items() if not _ignored(k, ignore)}


def fingerprint(config: dict, ignore: Iterable[str] = ()) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of :func:`fingerprinted`."""
    text = json.dumps(fingerprinted(config, ignore), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    """``["a.b: old -> new", ...]`` for every fingerprinted key whose value differs."""
    a, b = fingerprinted(old, ignore), fingerprinted(new, ignore)
    return [
        f"{k}: {json.dumps(a.get(k, _ABSENT))} -> {json.dumps(b.get(k, _ABSENT))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, _ABSENT) != b.get(k, _ABSENT)
    ]


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def claim_output_dir(
    cfg: Any, outputs: Sequence[str], *, resume_key: str | None = None, ignore: Sequence[str] = ()
) -> bool:
    """Make ``cfg.output_dir`` this run's; returns whether it resumes results already there.

    ``outputs`` names what the runner writes under ``output_dir`` (files or
    folders); any of them existing means the directory holds results.
    ``resume_key`` is the dotted config key that turns resuming on (e.g.
    ``checkpoint.resume``; ``None``: a same-config run always resumes).
    ``ignore`` lists dotted keys that do not change results (progress bars,
    concurrency, how far to train), so changing them still resumes. Raises
    :class:`RunDirError` before anything is written or deleted, unless
    ``cfg.overwrite`` is true: then the old results are deleted.
    """
    out = Path(cfg.output_dir)
    ignore = (*ignore, *([resume_key] if resume_key else []))
    config = to_dict(cfg)
    found = [name for name in outputs if (out / name).exists()]
    if found and not cfg.overwrite:
        _refuse_or_resume(out, config, found, ignore, resume_key, _get(cfg, resume_key) if resume_key else True)
    elif found:
        for name in found:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "fingerprint": fingerprint(config, ignore),
        "ignored_keys": sorted({*NOT_RESULTS, *ignore}),
        "config": config,
    }
    tmp = out / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(out / RUN_FILE)
    return bool(found) and not cfg.overwrite


def _refuse_or_resume(
    out: Path, config: dict, found: list[str], ignore: Sequence[str], resume_key: str | None, resume: bool
) -> None:
    what = f"output_dir {str(out)!r} holds results ({', '.join(found)})"
    escape = "set overwrite=true to delete them and start over, or choose another output_dir"
    try:
        old = json.loads((out / RUN_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{what} without a readable {RUN_FILE} saying which config made them; {escape}") from None
    changes = changed_keys(old, config, ignore)
    if changes:
        shown = "; ".join(changes[:12]) + (f"; and {len(changes) - 12} more" if len(changes) > 12 else "")
        raise RunDirError(
            f"{what} of a run with a different config (fingerprint {fingerprint(old, ignore)}, "
            f"this run {fingerprint(config, ignore)}), changed keys: {shown}; {escape}"
        )
    if not resume:
        raise RunDirError(
            f"{what} of a run with the same config and {resume_key} is false; set {resume_key}=true "
            f"to continue that run, or {escape}"
        )


class JsonlLog:
    """Append-only JSONL of per-item records, safe to write from several threads.

    ``existing`` holds the records already in the file (a torn last line from a
    killed writer is skipped, and the next record starts on a fresh line).
    """

    def __init__(self, path: str | Path):
        from jaxlab.train.metrics import read_jsonl

        self.path = Path(path)
        self.existing: list[dict] = read_jsonl(self.path) if self.path.exists() else []
        torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        self._file = self.path.open("a", encoding="utf-8")
        if torn:
            self._file.write("\n")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def fail_if_no_call_succeeded(
    records: Sequence[dict], kind: Callable[[dict], str], message: Callable[[dict], str], where: str
) -> None:
    """Raise :class:`RunFailedError` when ``records`` exist and none made a successful model call.

    Each record counts its successful calls under ``"calls"``; ``kind`` and
    ``message`` give a record's failure kind and text for the summary.
    """
    if not records or any(r["calls"] for r in records):
        return
    kinds = Counter(kind(r) or "no model call" for r in records)
    first = next((message(r) for r in records if message(r)), "")
    raise RunFailedError(
        f"every model call failed: {len(records)} of {len(records)} items made no successful call "
        f"({', '.join(f'{k}: {n}' for k, n in kinds.most_common())}); first error: {first[:500]!r}; "
        f"their records are in {where}, no results were written"
    )
