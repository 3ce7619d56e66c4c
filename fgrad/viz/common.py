"""What every view of a graph needs: its nodes in order, its inputs' names, numbers as text.

Also the adjoints of a scalar output (fg.grad's own reverse pass) and plain-text
tables, shared by :mod:`fgrad.viz.dot`, :mod:`fgrad.viz.text` and
:mod:`fgrad.viz.stats`. Inputs are named by tree path: ``w[3]``, ``b`` for one
dict argument, ``x`` for one number, ``x0``, ``x1.w`` for several arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fgrad.engine.core import Expr
from fgrad.engine.tree import TreeDef, tree_flatten
from fgrad.transforms.graph import backward, reachable


def peel(x: Any) -> Any:
    while type(x) is Expr:
        x = x.value
    return x


def show_number(x: Any, digits: int = 6) -> str:
    v = peel(x)
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)


def _segment(td: TreeDef, j: int) -> str:
    key = td.meta[j] if td.kind == "map" else td.meta[0][j] if td.kind == "dataclass" else j
    key = td.node_type._fields[j] if td.kind == "namedtuple" else key
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _arg_names(td: Any, bases: Sequence[str] | None = None) -> list[str]:
    """Friendly names of the leaves of the traced arguments (a tuple's TreeDef)."""
    if not isinstance(td, TreeDef) or td.kind != "tuple":
        return []
    single, out = len(td.children) == 1, []
    for i, child in enumerate(td.children):
        base = bases[i] if bases and i < len(bases) else ("x" if single else f"x{i}")
        stack = [(child, base)]
        while stack:
            t, path = stack.pop()
            if t.kind == "leaf":
                out.append(path[len(base) + 1 :] if single and path.startswith(base + ".") else path)
            else:
                stack.extend(reversed([(c, path + _segment(t, j)) for j, c in enumerate(t.children)]))
    return out


def leaf_names(nodes: list[Expr], bases: Sequence[str] | None = None) -> list[str | None]:
    """Aligned with ``nodes``: each input's tree path, None for op nodes."""
    cache: dict[int, list[str]] = {}
    out: list[str | None] = [None] * len(nodes)
    for i, n in enumerate(nodes):
        if n.prim is None:
            t = n.trace
            names = cache.get(id(t)) or cache.setdefault(id(t), _arg_names(t.in_tree, bases))
            out[i] = names[n.seq] if n.seq < len(names) else f"input{n.seq}"
    return out


def temp_prefix(taken: Iterable[str | None]) -> str:
    """A prefix p (t, tt, ...) such that no name in ``taken`` is p followed by digits."""
    clash = {n.rstrip("0123456789") for n in taken if n and n[-1].isdigit()}
    return next("t" * k for k in range(1, len(clash) + 2) if "t" * k not in clash)


def graph_of(out: Any) -> tuple[list[Any], TreeDef, list[Expr], dict[int, int]]:
    leaves, td = tree_flatten(out)
    return leaves, td, (nodes := reachable(leaves)), {id(n): i for i, n in enumerate(nodes)}


def adjoints(nodes: list[Expr], out: Expr) -> list[Any]:
    """Adjoints of ``nodes`` (None for 0) for the scalar ``out``, by ``graph.backward`` itself (so
    they are fg.grad's), over a tape rebuilt from the graph so that closed traces work too."""
    tr = out.trace
    tape: list[Any] = [None] * (out.seq + 1)
    for n in nodes:
        if n.trace is tr and n.seq <= out.seq:
            tape[n.seq] = n
    cts = backward(tr, [(out, 1.0)], tape=tape)
    return [cts[n.seq] if n.trace is tr and n.seq <= out.seq else None for n in nodes]


def table(rows: list[list[str]]) -> list[str]:
    """``rows`` of cells as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
