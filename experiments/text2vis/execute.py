"""Execute one sample's chart code in the sandbox and bring back its PNG and figure structure.

Every call is one fresh ``jaxlab.sandbox.run_python`` run: bubblewrap isolation, the Agg backend,
a wall-time and an address-space limit, and its own temp directory holding only ``table.csv``, the
sample's code and the harness (``_chart_harness.py``).  The PNG comes back only if this run wrote
it, under a file name with a fresh random nonce, collected before the directory is deleted.  The
released trainer's pitfall (a PNG path per task id and completion index, so a stale PNG from an
earlier step counted as success for code that drew nothing) cannot happen: nothing outlives a run.

Failures of any kind (no code, an exception, no figure, a timeout, a memory blow-up, a crash, a
harness that never reported) come back as ``ChartRun(ok=False, status=...)``; only bad arguments
from the caller raise.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from jaxlab.sandbox import run_python

__all__ = ["STATUSES", "ChartRun", "execute_chart"]

STATUSES = ("ok", "no_code", "error", "no_figure", "timeout", "memory", "crashed", "no_result")
_HARNESS = (Path(__file__).parent / "_chart_harness.py").read_text()
MAX_PNG_BYTES = 8 << 20


@dataclass(frozen=True)
class ChartRun:
    """One execution: ``ok`` iff the code raised nothing and left a figure saved as PNG."""

    ok: bool
    status: str
    png: bytes | None
    structure: dict | None
    stderr: str
    duration_s: float = 0.0


@functools.lru_cache(maxsize=1)
def _font_cache() -> dict[str, bytes]:
    """The host's matplotlib font list, so each sandboxed run skips rebuilding it (about a second)."""
    try:
        import matplotlib

        files = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    except Exception:  # no cache here: the sandbox builds its own
        return {}
    return {f".cache/matplotlib/{f.name}": f.read_bytes() for f in files[-1:]}


def execute_chart(
    code: str | None, table_csv: str, *, timeout_s: float = 10.0, memory_mb: int = 1024, allow_weak: bool = False
) -> ChartRun:
    """Run ``code`` with ``table_csv`` as ``table.csv`` in its working dir; never raises for bad code."""
    if not isinstance(table_csv, str):
        raise TypeError(f"table_csv: expected the table as CSV text, got {type(table_csv).__name__}")
    if code is None:
        return ChartRun(False, "no_code", None, None, "")
    if not isinstance(code, str):
        raise TypeError(f"code: expected str or None, got {type(code).__name__}")
    nonce = secrets.token_hex(12)
    png_name, result_name = f"chart_{nonce}.png", f"result_{nonce}.json"
    files = {"table.csv": table_csv, "sample.py": code, **_font_cache()}
    r = run_python(
        _HARNESS.replace("__NONCE__", nonce),
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        files=files,
        collect=(png_name, result_name),
        max_collect_bytes=MAX_PNG_BYTES,
        max_output_bytes=64_000,
        allow_weak=allow_weak,
    )
    stderr = r.stderr[-4000:]
    if r.status != "ok":
        return ChartRun(False, r.status, None, None, stderr, r.duration_s)
    try:
        result = json.loads(r.files[result_name])
    except (KeyError, ValueError, UnicodeDecodeError):
        return ChartRun(False, "no_result", None, None, stderr, r.duration_s)
    if not isinstance(result, dict):
        return ChartRun(False, "no_result", None, None, stderr, r.duration_s)
    structure = result.get("structure") if isinstance(result.get("structure"), dict) else None
    if result.get("error"):
        return ChartRun(False, "error", None, structure, (str(result["error"]) + stderr)[-4000:], r.duration_s)
    png = r.files.get(png_name)
    if not result.get("png") or png is None:
        return ChartRun(False, "no_figure", None, structure, stderr, r.duration_s)
    return ChartRun(True, "ok", png, structure, stderr, r.duration_s)
