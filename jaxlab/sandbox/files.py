"""Files into and out of a sandbox run's temp dir, without trusting what the sandboxed code left there.

Inputs are written before the code runs (names checked: relative, no ``..``).
Outputs are read after the code has died, but the code had write access to the
directory, so each one is opened with ``O_NOFOLLOW`` and checked to be a regular
file: a symlink ``chart.png -> /etc/shadow`` planted by the code is refused
instead of being read by the (possibly root) parent, and a file over the size
cap is left out rather than read into memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

MAX_COLLECT_BYTES = 16 << 20  # one collected file


def _safe_rel(name: str, what: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\0" in name:
        raise ValueError(f"{what}: expected a relative path inside the sandbox dir without '..', got {name!r}")
    return p


def write_files(root: str, files: Mapping[str, bytes | str]) -> list[str]:
    """Write ``files`` under ``root``; returns every path created (files and new dirs) for chown."""
    created: list[str] = []
    for name, data in files.items():
        rel = _safe_rel(name, "files")
        if rel.name in ("main.py", "_boot.py") and len(rel.parts) == 1:
            raise ValueError(f"files: {name!r} would replace the sandbox's own program")
        target = Path(root, *rel.parts)
        for parent in reversed(target.relative_to(root).parents[:-1]):
            d = Path(root) / parent
            if not d.exists():
                d.mkdir()
                created.append(str(d))
        target.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
        created.append(str(target))
    return created


def collect_files(root: str, names: Sequence[str], cap: int) -> dict[str, bytes]:
    """Regular files ``names`` under ``root`` of at most ``cap`` bytes; anything else is left out."""
    out: dict[str, bytes] = {}
    for name in names:
        rel = _safe_rel(name, "collect")
        path = os.path.join(root, *rel.parts)
        try:
            if any(os.path.islink(os.path.join(root, *rel.parts[:i])) for i in range(1, len(rel.parts))):
                continue  # a planted directory symlink would lead outside root
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
                continue
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(cap + 1)
            if len(data) <= cap:
                out[name] = data
        finally:
            os.close(fd)
    return out
