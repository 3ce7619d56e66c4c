"""docs/design.md is true of the code: its layers name every module, and the
functions, files and settings it mentions exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "fgrad"


def _modules() -> set[str]:
    found = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return found | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_the_layers_table_places_every_module_once() -> None:
    section = DESIGN.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and r.strip("| -") and "modules" not in r]
    placed: list[str] = []
    for row in rows:
        placed += re.findall(r"`(\w+)`", row.split("|")[2])
    assert sorted(placed) == sorted(_modules())


def test_the_functions_it_names_exist() -> None:
    names = set(re.findall(r"`(\w+)\.(\w+)", DESIGN))
    checked = 0
    for module, attr in names:
        if module == "walk":
            module = "tree.walk"
        if module in _modules() or module == "tree.walk":
            assert hasattr(importlib.import_module(f"fgrad.{module}"), attr), f"{module}.{attr}"
            checked += 1
        elif module == "fg":
            assert hasattr(importlib.import_module("fgrad"), attr), f"fg.{attr}"
            checked += 1
    assert checked >= 10


def test_the_files_and_settings_it_names_exist() -> None:
    for path in re.findall(r"`((?:tests|fgrad|docs|benchmarks|examples)/[\w/]+\.\w+)`", DESIGN):
        assert (ROOT / path).exists(), path
    codegen = importlib.import_module("fgrad.compilers.codegen")
    jit = importlib.import_module("fgrad.compilers.jit")
    assert "250,000" in DESIGN and jit.MAX_COMPILED_OPS == 250_000
    assert "up to 200 terms" in DESIGN and codegen._MAX_INLINE == 200
    assert "2**63" in DESIGN and codegen._MAX_INT_LITERAL == 2**63
