"""The house rules of fgrad/: the layers import one way, and modules stay small.

The package is five layers, each a folder but the last:

    engine        fgrad/engine/       nodes, primitives, bind, traces, guards, pytrees
    primitives    fgrad/primitives/   every operation and its rules; Python's operators
    transforms    fgrad/transforms/   grad family, passes over a tape, jacobians, custom
                                      rules, Taylor mode, vmap and its batches
    compilers     fgrad/compilers/    jit, straight-line and table code, compiled pytree
                                      walks, the numpy backend's code
    library       fgrad/*.py, io/, viz/   what users import by name: nn, optim, io, ...

A module may import modules of its own layer and of the layers above it in
this list, never below (imports are parsed with ``ast``, so imports inside
functions count too). A few modules are held to less (``PINNED``). No module
imports the package root (``fgrad/__init__.py``, the public API, which imports
everything), and the modules' import graph has no cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fgrad"
MAX_LINES = 400
MAX_CLASS_LINES = 120

LAYERS = ["engine", "primitives", "transforms", "compilers", "library"]
FOLDERS = {"engine", "primitives", "transforms", "compilers"}  # the rest is the library

# Modules held to less than their layer allows: module -> the fgrad modules
# (or packages, meaning every module in them) it may import.
PINNED: dict[str, set[str]] = {
    # the engine's messages and its traces stand alone
    "engine.errors": set(),
    "engine.trace": set(),
    # pytrees know nothing of nodes or transforms
    "engine.tree": {"engine.tree"},
    # io's loader checks a file and builds its tree with no other fgrad code
    "io.read": set(),
    # the optimisers are pytree arithmetic
    "optim": {"engine.tree", "primitives"},
    "datasets": set(),
}


def _source_files(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``engine.core`` for fgrad/engine/core.py, ``engine.tree`` for its
    __init__.py, ``__init__`` for the package root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def layer_of(module: str) -> str:
    head = module.split(".")[0]
    return head if head in FOLDERS else "library"


def fgrad_imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """The fgrad modules that ``path`` imports, as :func:`module_name` gives
    them (``__init__`` for the package root or a name it re-exports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules = {module_name(p, root) for p in _source_files(root)}
    own = module_name(path, root)
    package = own.split(".") if path.name == "__init__.py" and own != "__init__" else own.split(".")[:-1]
    found: set[str] = set()

    def resolve(dotted: list[str]) -> str | None:
        """The module (or package) a dotted name inside fgrad refers to."""
        if not dotted or dotted[0] != "fgrad":
            return None
        name = ".".join(dotted[1:])
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or "__init__"

    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                hit = resolve(alias.name.split("."))
                if hit:
                    found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = (node.module or "").split(".")
            else:
                base = ["fgrad", *package[: len(package) - (node.level - 1)]]
                if own == "__init__":
                    base = ["fgrad"]
                base += node.module.split(".") if node.module else []
            for alias in node.names:
                # ``from fgrad.x import y``: y is a module of x, or a name in x
                hit = resolve(base + [alias.name])
                if hit:
                    found.add(hit)
    found.discard(own)
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports
    for annotations only, which never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _within(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


FILES = _source_files()
MODULES = [p for p in FILES if module_name(p) != "__init__"]


def _id(p: Path) -> str:
    return str(p.relative_to(PACKAGE))


def test_the_package_sources_are_found() -> None:
    names = {module_name(p) for p in FILES}
    assert {"engine.core", "engine.tree", "primitives.ops", "transforms.graph", "compilers.jit"} <= names
    assert {"nn", "optim", "io", "viz", "testing", "__init__"} <= names
    assert {layer_of(n) for n in names - {"__init__"}} == set(LAYERS)


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    """What is wrong with the imports of the module at ``path`` (nothing: [])."""
    module = module_name(path, root)
    rank = LAYERS.index(layer_of(module))
    imported = fgrad_imports(path, root)
    where = f"fgrad/{path.relative_to(root)}"
    found = []
    if "__init__" in imported:
        found.append(
            f"{where} imports the package root (import fgrad / from fgrad import <name>): "
            "import the module that defines the name instead"
        )
    upward = sorted(m for m in imported if LAYERS.index(layer_of(m)) > rank)
    if upward:
        found.append(
            f"{where} ({layer_of(module)}) imports {upward}, of a layer that builds on it; "
            f"the layers, from the bottom: {' < '.join(LAYERS)}. Move the code down, or let the "
            "lower layer call a hook that the upper one installs"
        )
    for pinned, allowed in PINNED.items():
        if _within(module, {pinned}):
            extra = sorted(m for m in imported if not _within(m, allowed))
            if extra:
                found.append(
                    f"{where} imports {extra} but may import only {sorted(allowed) or 'nothing of fgrad'}"
                )
    return found


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_imports_point_one_way(path: Path) -> None:
    assert violations(path) == []


def test_the_module_import_graph_has_no_cycles() -> None:
    graph = {module_name(p): fgrad_imports(p) - {"__init__"} for p in MODULES}
    done: set[str] = set()
    for start in sorted(graph):
        # iterative depth-first search, keeping the current path to report a cycle
        path: list[str] = []
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                path.pop()
                done.add(node)
                continue
            if node in path:
                # a package importing its own modules is not a cycle unless they import it back
                cycle = path[path.index(node) :] + [node]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if node in done:
                continue
            path.append(node)
            stack.append((node, True))
            stack.extend((dep, False) for dep in sorted(graph.get(node, ())))


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_modules_stay_under_the_line_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"fgrad/{_id(path)} has {lines} lines (limit {MAX_LINES}): split it along a seam"
    )


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_classes_stay_under_the_line_limit(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, (
                f"fgrad/{_id(path)}: class {node.name} has {lines} lines (limit {MAX_CLASS_LINES}): "
                "split it along a seam"
            )


# The parser and the rules themselves, on made-up sources -------------------------------------


def _layout(tmp_path: Path) -> Path:
    root = tmp_path / "fgrad"
    for rel in [
        "__init__.py",
        "nn.py",
        "engine/__init__.py",
        "engine/core.py",
        "engine/tree/__init__.py",
        "engine/tree/walk.py",
        "primitives/__init__.py",
        "primitives/ops.py",
        "compilers/__init__.py",
        "compilers/jit/__init__.py",
        "compilers/jit/keys.py",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from fgrad.engine.core import Expr", {"engine.core"}),
        ("from fgrad.engine import core", {"engine.core"}),
        ("from fgrad.engine import core, tree as t", {"engine.core", "engine.tree"}),
        ("from fgrad.engine.tree import walk", {"engine.tree.walk"}),
        ("from fgrad.engine.tree import TreeDef", {"engine.tree"}),
        ("import fgrad.engine.core", {"engine.core"}),
        ("import fgrad", {"__init__"}),
        ("from fgrad import grad", {"__init__"}),
        ("from fgrad import nn", {"nn"}),
        ("def f():\n    from fgrad.compilers.jit.keys import key\n", {"compilers.jit.keys"}),
        ("import math\nfrom pyrsistent import pmap", set()),
        ("from . import ops", {"primitives.ops"}),
        ("from .. import engine", {"engine"}),
        ("from ..engine.core import Expr", {"engine.core"}),
        ("from fgrad.primitives import sample  # itself", set()),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fgrad.nn import MLP\n", set()),
    ],
)
def test_import_parser(tmp_path: Path, source: str, expected: set[str]) -> None:
    root = _layout(tmp_path)
    (root / "primitives" / "sample.py").write_text(source)
    assert fgrad_imports(root / "primitives" / "sample.py", root) == expected


def test_import_parser_in_a_subpackage(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    (root / "compilers" / "jit" / "__init__.py").write_text(
        "from .keys import key\nfrom ...engine import core\n"
    )
    assert fgrad_imports(root / "compilers" / "jit" / "__init__.py", root) == {
        "compilers.jit.keys",
        "engine.core",
    }
    assert module_name(root / "compilers" / "jit" / "__init__.py", root) == "compilers.jit"
    assert module_name(root / "__init__.py", root) == "__init__"


@pytest.mark.parametrize(
    "module, layer",
    [
        ("engine.core", "engine"),
        ("compilers.jit.keys", "compilers"),
        ("io.read", "library"),
        ("nn", "library"),
    ],
)
def test_layers_of_modules(module: str, layer: str) -> None:
    assert layer_of(module) == layer


@pytest.mark.parametrize(
    "where, source, wrong",
    [
        ("engine/sample.py", "from fgrad.primitives.ops import exp", "imports ['primitives.ops']"),
        ("primitives/sample.py", "def f():\n    from fgrad.compilers.jit import jit\n", "compilers.jit"),
        ("compilers/sample.py", "from fgrad import nn", "imports ['nn']"),
        ("compilers/sample.py", "import fgrad as fg", "the package root"),
        ("engine/tree/sample.py", "from fgrad.engine.core import Expr", "may import only ['engine.tree']"),
    ],
)
def test_the_rules_catch_wrong_imports(tmp_path: Path, where: str, source: str, wrong: str) -> None:
    root = _layout(tmp_path)
    (root / where).write_text(source)
    found = violations(root / where, root)
    assert found and any(wrong in f for f in found), found


@pytest.mark.parametrize(
    "where, source",
    [
        ("compilers/sample.py", "from fgrad.engine.core import Expr\nfrom fgrad.primitives import ops"),
        ("nn2.py", "from fgrad.compilers.jit import jit\nfrom fgrad import nn"),
        ("engine/tree/sample.py", "from fgrad.engine.tree import walk"),
    ],
)
def test_the_rules_allow_imports_downwards(tmp_path: Path, where: str, source: str) -> None:
    root = _layout(tmp_path)
    (root / where).write_text(source)
    assert violations(root / where, root) == []
