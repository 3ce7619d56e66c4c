"""The house rules of fgrad/: imports point one way, and modules stay small.

Each module of the package may import only the fgrad modules listed for it in
``ALLOWED`` (parsed with ``ast``, so imports inside functions count too). A new
module must be given its place here: the test fails until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fgrad"
MAX_LINES = 450

# Everything the application layer may use: the package's public surface and
# the demo command (``fgrad-demo``) sit on top of every other module.
_EVERYTHING = None

ALLOWED: dict[str, set[str] | None] = {
    "tree": set(),
    "errors": set(),
    # the engine; its misuse messages live in errors
    "core": {"errors"},
    # the primitives the operators need (add, mul, pow ...), split out of core
    "arith": {"core"},
    # comparisons and float() of nodes, and jit's guards on them
    "guards": {"core", "errors"},
    # batches as values: vmap's numpy backend (numpy imported on first use)
    "batching": {"core", "arith", "ops"},
    "ops": {"core", "arith", "errors"},
    # Python's operators on nodes (+, //, round(), math.floor ...), bound to the primitives
    "operators": {"core", "arith", "ops", "errors"},
    "graph": {"core", "arith", "tree", "batching", "errors"},
    "transforms": {"core", "graph", "tree", "errors"},
    # jvp, jacobians and hessians: the transforms' family, built on grad.
    "jacobians": {"core", "graph", "tree", "transforms"},
    # custom_vjp / custom_jvp: user-ruled primitives, a sibling of ops.
    "custom": {"core"},
    # Taylor-mode higher derivatives: its own rules per op, over a traced tape.
    "taylor": {"core", "arith", "ops", "graph", "tree", "transforms"},
    # jit: tracing, guards and the path cache; codegen turns a trace into code.
    "codegen": {"core", "arith", "ops", "batchgen", "codetable"},
    # jit's table-driven programs, for paths too large to compile
    "codetable": set(),
    # numpy code for traces holding batches (vmap's numpy backend)
    "batchgen": {"core", "arith", "ops", "batching", "batchregs"},
    # its registers: names, constants, and the matrix or vector each lives in
    "batchregs": {"arith"},
    # debug_nans: the API and report; core only reads the switch.
    "debug": {"core"},
    "jit": {"core", "codegen", "tree", "treegen", "transforms"},
    # compiled flatten / unflatten for one structure (jit's per-call overhead)
    "treegen": {"tree"},
    "viz": {"core", "graph", "tree", "transforms"},
    # save / load of parameter trees (models included).
    "io": {"tree", "nn", "ioread"},
    # io's loader: checks a file's contents and builds its tree (imports no fgrad module)
    "ioread": set(),
    "testing": {"transforms", "tree", "ops", "graph"},
    "nn": {"core", "ops", "tree"},
    "optim": {"tree", "ops"},
    "datasets": set(),
    # vmap maps a function over examples, as a batch when it can.
    "vmap": {"core", "tree", "batching"},
    "__init__": _EVERYTHING,
    "demo": _EVERYTHING,
}


def _source_files(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _module_of(path: Path, root: Path = PACKAGE) -> str:
    """The top-level module a file belongs to: ``core`` for core.py, ``jit`` for jit/x.py."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _fgrad_imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """The top-level fgrad modules that ``path`` imports (``__init__`` for the package root)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # Relative imports count from the file's package (a subpackage's
    # __init__.py lives inside that subpackage).
    package = ["fgrad", *path.relative_to(root).parent.parts]
    modules = {_module_of(p, root) for p in _source_files(root)}
    found: set[str] = set()

    def add(parts: list[str]) -> None:
        if not parts or parts[0] != "fgrad":
            return
        if len(parts) > 1 and parts[1] in modules:
            found.add(parts[1])
        else:
            found.add("__init__")  # the package itself, or a name it re-exports

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = (node.module or "").split(".")
            else:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    base = base + node.module.split(".")
            if node.module is None:  # from . import a, b
                for alias in node.names:
                    add(base + [alias.name])
            else:
                add(base)
    found.discard(_module_of(path, root))
    return found


FILES = _source_files()


def test_the_package_sources_are_found() -> None:
    names = {_module_of(p) for p in FILES}
    assert {"core", "tree", "ops", "graph", "transforms", "testing", "__init__"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_has_a_place_in_the_import_map(path: Path) -> None:
    module = _module_of(path)
    assert module in ALLOWED, (
        f"fgrad/{path.relative_to(PACKAGE)} is not in tests/test_imports.py ALLOWED: "
        "decide which fgrad modules it may import and add it there (and to DESIGN.md)"
    )


LAYERED = [p for p in FILES if ALLOWED.get(_module_of(p), _EVERYTHING) is not _EVERYTHING]


@pytest.mark.parametrize("path", LAYERED, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    module = _module_of(path)
    allowed = ALLOWED[module]
    assert allowed is not None
    imported = _fgrad_imports(path)
    forbidden = sorted(imported - allowed)
    assert not forbidden, (
        f"fgrad/{path.relative_to(PACKAGE)} imports {forbidden} but {module} may import only "
        f"{sorted(allowed) or 'nothing of fgrad'}"
    )


def test_the_module_import_graph_has_no_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for p in FILES:
        module = _module_of(p)
        if module != "__init__":
            graph.setdefault(module, set()).update(_fgrad_imports(p) - {"__init__"})
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
                cycle = path[path.index(node) :] + [node]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if node in done:
                continue
            path.append(node)
            stack.append((node, True))
            stack.extend((dep, False) for dep in sorted(graph.get(node, ())))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_under_the_line_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < MAX_LINES, (
        f"fgrad/{path.relative_to(PACKAGE)} has {lines} lines (limit {MAX_LINES}): split it along a seam"
    )


# The parser itself, on made-up sources ------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from .core import Expr", {"core"}),
        ("from . import ops", {"ops"}),
        ("from . import ops, tree as t", {"ops", "tree"}),
        ("import fgrad.graph", {"graph"}),
        ("import fgrad", {"__init__"}),
        ("from fgrad import grad", {"__init__"}),
        ("from fgrad.transforms import grad", {"transforms"}),
        ("def f():\n    from .ops import exp\n", {"ops"}),
        ("import math\nfrom pyrsistent import pmap", set()),
        ("from . import sample  # itself", set()),
    ],
)
def test_import_parser(tmp_path: Path, source: str, expected: set[str]) -> None:
    # Lay the made-up module out as fgrad/sample.py next to (empty) real ones.
    root = tmp_path / "fgrad"
    root.mkdir()
    for p in FILES:
        if p.parent == PACKAGE:
            (root / p.name).write_text("")
        elif p.name == "__init__.py" and p.parent.parent == PACKAGE:  # a subpackage: fgrad/tree/
            (root / p.parent.name).mkdir()
            (root / p.parent.name / "__init__.py").write_text("")
    (root / "sample.py").write_text(source)
    assert _fgrad_imports(root / "sample.py", root) == expected


def test_import_parser_in_a_subpackage(tmp_path: Path) -> None:
    root = tmp_path / "fgrad"
    (root / "jit").mkdir(parents=True)
    (root / "core.py").write_text("")
    (root / "jit" / "__init__.py").write_text("from .cache import Cache\nfrom ..core import Expr\n")
    (root / "jit" / "cache.py").write_text(
        "from . import guards\nfrom ..graph import x\nfrom .. import core\n"
    )
    (root / "jit" / "guards.py").write_text("")
    assert _fgrad_imports(root / "jit" / "__init__.py", root) == {"core"}
    assert _fgrad_imports(root / "jit" / "cache.py", root) == {"__init__", "core"}
