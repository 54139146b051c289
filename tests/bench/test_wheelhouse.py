"""pyproject's version markers and the wheelhouse helper: the py3.11 CPU pins here, the jax 0.11 ranges on 3.12."""

from importlib import metadata

import pytest
from packaging.requirements import Requirement

from experiments.bench import wheelhouse


def _pins(reqs: list[str]) -> dict[str, str]:
    return {Requirement(r).name: str(Requirement(r).specifier) for r in reqs}


def test_py311_selects_the_cpu_pins_and_this_environment_satisfies_them():
    reqs = wheelhouse.requirements_for("3.11", ("dev",))
    pins = _pins(reqs)
    assert pins["jax"] == "==0.10.2" and pins["jaxlib"] == "==0.10.2" and pins["flax"] == "==0.12.8"
    assert pins["torch"] == "==2.13.0" and "pytest" in pins
    assert len([r for r in reqs if Requirement(r).name == "jax"]) == 1  # the 3.12 line is not selected too
    for name in ("jax", "jaxlib", "flax"):  # what the tests run on is what pyproject pins for 3.11
        assert Requirement(next(r for r in reqs if Requirement(r).name == name)).specifier.contains(
            metadata.version(name)
        ), name


def test_py312_selects_jax_011_and_a_flax_built_for_it():
    pins = _pins(wheelhouse.requirements_for("3.12.3"))
    assert pins["jax"] == "<0.12,>=0.11.2" and pins["jaxlib"] == "<0.12,>=0.11.2"
    assert pins["flax"] == "==0.12.12"  # flax 0.12.12 requires jax>=0.11.1, Python>=3.12
    assert Requirement("torch" + pins["torch"]).specifier.contains("2.5.0")  # an image's own torch is kept
    assert "pytest" not in pins  # no extras asked for
    assert all(Requirement(r).marker is None for r in wheelhouse.requirements_for("3.12"))


def test_every_line_parses_and_unknown_input_is_named():
    for py in ("3.11", "3.12", "3.13"):
        for r in wheelhouse.requirements_for(py, ("dev", "gpu", "tpu")):
            Requirement(r)
    with pytest.raises(ValueError, match="--extras"):
        wheelhouse.requirements_for("3.12", ("cuda99",))
    with pytest.raises(ValueError, match="--python"):
        wheelhouse.target_environment("three")


FREEZE = """jax==0.11.2
jaxlib==0.11.2
jax-cuda12-plugin==0.11.2
torch==2.5.0+cu124
Numpy==2.1.3
mylib @ file:///opt/mylib
"""


def test_image_freeze_becomes_constraints_and_its_own_builds_are_kept():
    constraints, built = wheelhouse.image_constraints(FREEZE)
    assert constraints == ["jax==0.11.2", "jaxlib==0.11.2", "jax-cuda12-plugin==0.11.2", "torch==2.5.0", "Numpy==2.1.3"]
    assert built == {"torch", "mylib"}
    with pytest.raises(ValueError, match="freeze line"):
        wheelhouse.image_constraints("jax>=0.11")


def test_to_download_is_the_resolution_minus_the_image():
    report = {
        "install": [
            {"metadata": {"name": n, "version": v}}
            for n, v in [
                ("jax", "0.11.2"),
                ("flax", "0.12.12"),
                ("torch", "2.5.0"),
                ("numpy", "2.1.3"),
                ("optax", "0.2.8"),
                ("jaxlib", "0.11.3"),
                ("setuptools", "80.0"),
            ]
        ]
    }
    # jaxlib differs from the image's version, so it must come along; the rest the image has, except the build
    # backend, which an isolated offline build cannot take from the image
    freeze = FREEZE + "setuptools==80.0\n"
    assert wheelhouse.to_download(report, freeze) == [
        "flax==0.12.12",
        "jaxlib==0.11.3",
        "optax==0.2.8",
        "setuptools==80.0",
    ]
    assert len(wheelhouse.to_download(report, "")) == 7
