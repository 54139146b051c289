"""What an offline accelerator image needs from jaxlab's pyproject: requirements for a target Python.

``build_wheelhouse.sh`` (next to this file) runs on a machine with PyPI and builds a folder of
wheels to carry to a GPU/TPU machine with Python 3.12, jax 0.11.2 and no network. This module is
its logic, kept in Python so it can be tested here:

* :func:`requirements_for` evaluates pyproject's environment markers for the *target* interpreter
  (not this one), so the py3.11 pins and the py3.12 ranges each go where they belong;
* :func:`image_constraints` turns the image's ``pip freeze`` into constraints (the resolver then
  keeps the image's jax, CUDA plugin, torch, ... wherever they satisfy jaxlab) and names the
  packages the image built itself (local versions like ``2.5.0+nv24.10``, ``@ file://`` installs),
  which no index can serve and which are therefore never downloaded;
* :func:`to_download` is the resolver's choice minus what the image already has at that version.

    python -m experiments.bench.wheelhouse requirements --python 3.12 --extras dev
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[2]
BUILD_BACKEND = {"setuptools", "wheel"}
"""Always carried: ``pip install -e .`` builds in an isolated environment that sees only the wheelhouse,
never the image's installed setuptools."""


def target_environment(python: str, platform: str = "linux") -> dict[str, str]:
    """Marker variables of a CPython ``python`` (``"3.12"`` or ``"3.12.3"``) on ``platform``."""
    parts = python.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--python: expected a version like 3.12 or 3.12.3, got {python!r}")
    env = dict(default_environment())
    full = ".".join(parts + ["0"] * (3 - len(parts)))
    env.update(
        python_version=".".join(parts[:2]),
        python_full_version=full,
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform=platform,
        platform_system={"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}.get(platform, platform),
    )
    return env


def requirements_for(python: str, extras: tuple[str, ...] = (), pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """pyproject's dependencies (plus ``extras``) whose markers hold for ``python``, markers stripped."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise ValueError(f"--extras: {unknown} not in pyproject's optional-dependencies {sorted(optional)}")
    env = target_environment(python)
    out = []
    for line in list(project["dependencies"]) + [r for e in extras for r in optional[e]]:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            req.marker = None
            out.append(str(req))
    return out


def image_constraints(freeze: str) -> tuple[list[str], set[str]]:
    """``(constraints, image_built)`` from the image's ``pip freeze`` text.

    Every ``name==version`` line becomes a constraint (a local version such as ``2.5.0+nv24.10`` as its
    public release ``2.5.0``, so the resolver sees that build's dependencies); names with a local version
    or installed from a path or URL are the image's own builds, never downloaded.
    """
    constraints, built = [], set()
    for raw in freeze.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-e ", "--")):
            continue
        if " @ " in line:
            built.add(canonicalize_name(line.split(" @ ", 1)[0]))
            continue
        if "==" not in line:
            raise ValueError(
                f"freeze line {raw!r}: expected 'name==version' or 'name @ url' (the output of pip freeze)"
            )
        name, version = (s.strip() for s in line.split("==", 1))
        try:
            parsed = Version(version)
        except InvalidVersion:
            built.add(canonicalize_name(name))
            continue
        if parsed.local is not None:  # the image's build of a public release: resolve against that release
            built.add(canonicalize_name(name))
        constraints.append(f"{name}=={parsed.public}")
    return constraints, built


def to_download(report: dict, freeze: str) -> list[str]:
    """``name==version`` of every package pip's ``--report`` resolved that the image does not have (plus the
    build backend, which an offline editable install needs as wheels)."""
    constraints, built = image_constraints(freeze)
    have = {canonicalize_name(c.split("==")[0]): c.split("==")[1] for c in constraints}
    out = []
    for item in report["install"]:
        meta = item["metadata"]
        name = canonicalize_name(meta["name"])
        if name not in BUILD_BACKEND and (name in built or have.get(name) == meta["version"]):
            continue
        out.append(f"{meta['name']}=={meta['version']}")
    return sorted(out, key=str.lower)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("requirements", help="print the requirements for a target Python, one a line")
    r.add_argument("--python", default="3.12")
    r.add_argument("--extras", default="", help="comma-separated extras, e.g. dev")
    c = sub.add_parser("constraints", help="print constraints from a pip freeze file")
    c.add_argument("freeze")
    d = sub.add_parser("download", help="print name==version to download from a pip --report JSON")
    d.add_argument("report")
    d.add_argument("freeze")
    args = ap.parse_args(argv)
    if args.cmd == "requirements":
        print("\n".join(requirements_for(args.python, tuple(e for e in args.extras.split(",") if e))))
    elif args.cmd == "constraints":
        constraints, built = image_constraints(Path(args.freeze).read_text())
        print("\n".join(constraints))
        if built:
            print(f"# the image's own builds (kept, never downloaded): {', '.join(sorted(built))}", file=sys.stderr)
    else:
        print("\n".join(to_download(json.loads(Path(args.report).read_text()), Path(args.freeze).read_text())))


if __name__ == "__main__":
    main()
