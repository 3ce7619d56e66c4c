"""The README is true: its code runs, and the names and files it gives exist.

Every Python block is a doctest and runs here, in order, in one namespace;
the quick start's commands are the ones CI runs; every module, API name and
file the README names exists, and every module of the package is named.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest
from test_docs import layout  # (the layers and their modules, read off fgrad/)

import fgrad as fg

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_every_python_block_is_a_doctest() -> None:
    python = blocks(README, "python")
    assert len(python) >= 4
    for block in python:
        assert block.lstrip().startswith(">>> "), f"a Python block that is not a doctest:\n{block}"


def test_the_python_blocks_run_and_print_what_they_show() -> None:
    pytest.importorskip("numpy")  # the vmap example runs on the numpy backend
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict[str, object] = {}
    for k, block in enumerate(blocks(README, "python")):
        test = parser.get_doctest(block, globs, f"README block {k}", "README.md", 0)
        runner.run(test, clear_globs=False)
        globs = test.globs  # (a DocTest copies the namespace it is given)
    results = runner.summarize(verbose=False)
    assert results.attempted > 20 and results.failed == 0


def test_the_quick_start_is_what_ci_runs() -> None:
    first = blocks(README, "bash")[0]
    commands = [line.split("#")[0].strip() for line in first.strip().splitlines()]
    assert commands == [
        "pip install . && python examples/moons.py",
        "pip install '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet '.[test]'" in ci and "python -m pytest" in ci
    assert (ROOT / "examples" / "moons.py").exists()  # its main() runs in tests/test_examples.py


def _table(heading: str) -> list[str]:
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [row for row in rows if row.strip("| -")]  # (not the header or the rule)


def test_the_module_table_names_every_module_and_only_modules() -> None:
    placed = {}
    for row in _table("## How it is built"):
        cells = row.split("|")
        if "`" not in cells[2]:
            continue  # the header
        (where,) = re.findall(r"`([\w/]+)`", cells[2])
        placed[where] = set(re.findall(r"`(\w+)`", cells[3]))
    assert placed == layout()


def test_the_api_table_names_what_fgrad_has() -> None:
    for row in _table("## The API in brief"):
        first = row.split("|")[1]
        for name in re.findall(r"`(?:fgrad\.)?(\w+)[(`]", first):
            assert hasattr(fg, name) or importlib.util.find_spec(f"fgrad.{name}"), name
    ops_row = next(r for r in _table("## The API in brief") if r.startswith("| ops"))
    ops = ops_row.split("|")[2].split("operators")[0]
    names = [
        re.match(r"\w+", word).group()
        for span in re.findall(r"`([^`]+)`", ops)  # type: ignore[union-attr]
        for word in span.split()
        if re.match(r"[a-z_]+(\(|$)", word)
    ]
    assert len(names) > 20
    for name in names:
        assert callable(getattr(fg, name, None)), name


def test_the_files_the_readme_names_exist() -> None:
    for path in set(re.findall(r"\b((?:examples|benchmarks|docs|fgrad|tests)/[\w/]+\.(?:py|md))", README)):
        if "/results/" not in path:  # (what a benchmark writes when it runs)
            assert (ROOT / path).exists(), path
    assert "DESIGN.md" not in README.replace("docs/design.md", "")
