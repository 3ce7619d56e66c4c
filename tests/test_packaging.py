"""The package a user installs: one version, the licence it declares, a changelog."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import fgrad as fg

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_has_one_source() -> None:
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fgrad.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", fg.__version__)


def test_the_installed_metadata_says_the_same_version() -> None:
    # (the README's test command installs the package first: pip install '.[test]')
    assert importlib.metadata.version("fgrad") == fg.__version__


def test_the_licence_is_mit_and_its_text_is_shipped() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_the_changelog_starts_at_the_first_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased" and headings[-1] == "0.1.0"
    assert "keepachangelog.com" in text


def test_the_sdist_carries_what_the_tests_need() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    for folder in ("tests", "examples", "benchmarks", "docs", ".ci"):
        assert f"graft {folder}\n" in manifest, folder
    # (.ci/run builds the sdist, unpacks it and runs this suite from it)
    assert "unpack_sdist" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "module, names",
    [
        ("fgrad.nn", ["Neuron", "Layer", "MLP"]),
        ("fgrad.optim", ["sgd", "momentum", "adam", "apply_updates"]),
        ("fgrad.testing", ["check_grads", "numerical_grad"]),
        ("fgrad.io", ["save", "load", "register", "LoadError"]),
        ("fgrad.viz", ["to_dot", "draw", "formula", "explain", "graph_stats"]),
        ("fgrad.datasets", ["moons"]),
        ("fgrad.debug", ["debug_nans", "NanError"]),
    ],
)
def test_the_library_keeps_its_module_paths(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"
