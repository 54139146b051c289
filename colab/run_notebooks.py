"""Execute the notebooks in colab/ top to bottom and write their outputs (text and plots) back in place.

    python colab/run_notebooks.py [NOTEBOOK ...]      # default: every colab/*.ipynb

The committed notebooks carry the outputs of this command, so a reader sees what a run prints and plots
before running anything; `tests/test_colab_notebooks.py` re-executes them headless and checks that the
committed copies have outputs and no errors. A notebook that raises is not written (its old outputs stay).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """``path`` executed in a fresh kernel with ``colab/`` as its working directory (as the tests run it)."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        t0 = time.perf_counter()
        print(f"executing {path.name} ...", flush=True)
        nb = execute(path)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.metadata.pop("execution", None)  # per-run timestamps would make every rerun a diff
        nbformat.write(nb, path)
        print(f"  wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
