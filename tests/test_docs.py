"""docs/design.md is true of the code: its layers name every module, and the
functions, files and settings it mentions exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "fgrad"


LAYER_FOLDERS = ("engine", "primitives", "transforms", "compilers")


def entries(folder: Path) -> set[str]:
    """The modules and subpackages directly in ``folder``."""
    found = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    return found | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}


def layout() -> dict[str, set[str]]:
    """Each layer's folder (``fgrad/`` for the library) and what is in it."""
    out = {f"{name}/": entries(PACKAGE / name) for name in LAYER_FOLDERS}
    out["fgrad/"] = entries(PACKAGE) - set(LAYER_FOLDERS)
    return out


def _dotted() -> dict[str, str]:
    """Every module and package of fgrad by its last name (``core`` ->
    ``engine.core``); a name used twice maps to None and must be written dotted."""
    names: dict[str, str] = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            dotted = ".".join(parts)
            names[parts[-1]] = "" if parts[-1] in names and names[parts[-1]] != dotted else dotted
    return names


def test_the_layers_table_places_every_module_once() -> None:
    section = DESIGN.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and r.strip("| -") and "modules" not in r]
    placed = {}
    for row in rows:
        cells = row.split("|")
        (where,) = re.findall(r"`([\w/]+)`", cells[2])
        placed[where] = re.findall(r"`(\w+)`", cells[3])
        assert len(placed[where]) == len(set(placed[where])), row
    assert {k: set(v) for k, v in placed.items()} == layout()


def test_the_functions_it_names_exist() -> None:
    names = set(re.findall(r"`(\w+)\.(\w+)", DESIGN))
    modules = _dotted()
    checked = 0
    for module, attr in names:
        if module in modules:
            assert modules[module], f"{module} names two modules: write it dotted"
            assert hasattr(importlib.import_module(f"fgrad.{modules[module]}"), attr), f"{module}.{attr}"
            checked += 1
        elif module == "fg":
            assert hasattr(importlib.import_module("fgrad"), attr), f"fg.{attr}"
            checked += 1
    assert checked >= 10


def test_the_files_and_settings_it_names_exist() -> None:
    for path in re.findall(r"`((?:tests|fgrad|docs|benchmarks|examples)/[\w/]+\.\w+)`", DESIGN):
        assert (ROOT / path).exists(), path
    codegen = importlib.import_module("fgrad.compilers.pysource")
    jit = importlib.import_module("fgrad.compilers.jit")
    assert "250,000" in DESIGN and jit.MAX_COMPILED_OPS == 250_000
    assert "up to 200 terms" in DESIGN and codegen._MAX_INLINE == 200
    assert "2**63" in DESIGN and codegen._MAX_INT_LITERAL == 2**63
