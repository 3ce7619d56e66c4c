"""Graphviz views of a graph: DOT text, drawings in files, SVG for Jupyter.

DOT ids are generated (``n0``, ``n1``, arguments first); user text (dict keys,
primitive names) goes only into escaped, quoted labels of ``box`` nodes, where
``<>{}|`` are plain text. Constants are folded into their op's label,
``pow(_, 2)``. Drawing imports the ``graphviz`` package (the ``viz`` extra) only
when called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fgrad.engine.core import Expr
from fgrad.engine.tree import TreeDef, tree_leaves, tree_paths
from fgrad.transforms.graph import reachable
from fgrad.viz.common import adjoints, graph_of, leaf_names, show_number

_COMMUTATIVE = frozenset({"add", "mul", "sum", "maximum", "minimum"})
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_ESCAPES = {c: f"\\\\x{c:02x}" for c in (*range(32), 127)}  # shown as text, e.g. \x0d
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n"})


def _op_head(n: Expr) -> str:
    name = n.prim.name if n.prim is not None else "input"
    if all(type(a) is Expr for a in n.args):
        return name
    head = f"{name}({', '.join('_' if type(a) is Expr else repr(a) for a in n.args)})"
    return head if len(head) <= 40 else head[:37] + "..."


def _node_grads(leaves: list[Any], nodes: list[Expr], grads: Any) -> Any:
    outs = [x for x in leaves if type(x) is Expr]
    if grads is None or (not outs and not isinstance(grads, str)):
        return None
    if isinstance(grads, str):
        if grads != "compute":
            raise ValueError(f"to_dot: grads must be None, 'compute' or a pytree of gradients, got {grads!r}")
        if len(leaves) != 1 or not outs:
            raise ValueError("to_dot(grads='compute') needs one scalar output node; show one at a time")
        return adjoints(nodes, outs[0])
    tr, g_leaves = max((x.trace for x in outs), key=lambda t: t.level), tree_leaves(grads)
    if len(g_leaves) != (want := tr.in_tree.num_leaves if isinstance(tr.in_tree, TreeDef) else 0):
        raise ValueError(
            f"to_dot: grads has {len(g_leaves)} leaves but the traced inputs have {want}; pass "
            "what fg.grad returns for every traced argument (argnums=(0, 1, ...)), or 'compute'"
        )
    return [g_leaves[n.seq] if n.prim is None and n.trace is tr else None for n in nodes]


def to_dot(out: Any, grads: Any = None) -> str:
    """The graph of ``out`` (a node or pytree of nodes) as Graphviz DOT text.

    One box per node (shared nodes once) shows the op or input path, the value and the
    gradient if known; outputs have a double border. ``grads``: None; the gradients of
    the traced inputs (what ``fg.grad`` returns); or ``"compute"``: every adjoint.

    >>> import fgrad as fg
    >>> out = fg.trace(lambda p: fg.tanh(p["w"] * 3.0 + p["b"]))({"w": 0.5, "b": -1.0})
    >>> print(*to_dot(out, grads="compute").splitlines()[6:8], sep="\\n")
      n2 [label="mul(_, 3.0)\\nvalue 1.5\\ngrad 0.786448"];
      n1 -> n2;
    """
    leaves, out_td, nodes, index = graph_of(out)
    adj = _node_grads(leaves, nodes, grads)
    names = leaf_names(nodes)
    outputs: dict[int, list[str]] = {}
    for path, x in zip(tree_paths(out_td), leaves, strict=True):
        if type(x) is Expr:
            outputs.setdefault(index[id(x)], []).append("out" + path)
    lines = [
        "digraph fgrad {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace", fontsize=10];',
        '  edge [fontname="monospace", fontsize=9];',
    ]
    for i, n in enumerate(nodes):
        label = f"{names[i] if n.prim is None else _op_head(n)}\nvalue {show_number(n.value)}"
        if adj is not None and adj[i] is not None:
            label += f"\ngrad {show_number(adj[i])}"
        extra = ", style=rounded" if n.prim is None else ""
        if i in outputs:
            label, extra = label + "\n" + ", ".join(outputs[i]), extra + ", peripheries=2"
        lines.append(f'  n{i} [label="{label.translate(_ESCAPES)}"{extra}];')
        # Where order matters, an edge shows the argument's position (dot's are ws, xs, bias).
        ordered = n.prim is not None and n.prim.name not in _COMMUTATIVE
        ordered = ordered and sum(type(a) is Expr for a in n.args) > 1
        for k, a in enumerate(n.args):
            if type(a) is Expr:
                lines.append(f"  n{index[id(a)]} -> n{i}" + (f' [label="{k}"];' if ordered else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render(out: Any, fmt: str, grads: Any, max_nodes: int) -> bytes:
    size = len(reachable(tree_leaves(out)))
    if size > max_nodes:
        raise ValueError(
            f"this graph has {size} nodes, too many to draw usefully (max_nodes={max_nodes}); "
            "summarise it with fg.graph_stats(out), draw a smaller example, or pass max_nodes="
        )
    text = to_dot(out, grads)
    try:
        graphviz: Any = importlib.import_module("graphviz")
    except ImportError as e:
        raise ImportError("drawing needs the graphviz package: pip install 'fgrad[viz]'") from e
    try:
        return graphviz.Source(text).pipe(format=fmt)  # type: ignore[no-any-return]
    except graphviz.ExecutableNotFound as e:
        raise RuntimeError("drawing needs Graphviz's dot program: install Graphviz (graphviz.org)") from e


def draw(out: Any, path: str | Path, grads: Any = None, max_nodes: int = 500) -> Path:
    """Render the graph of ``out`` to ``path`` (``.svg``, ``.png`` or ``.pdf``); return the path.

    Needs the ``graphviz`` package (the ``viz`` extra) and Graphviz's ``dot``.
    Graphs of more than ``max_nodes`` nodes are refused; ``grads`` is as for :func:`to_dot`.
    """
    p = Path(path)
    if (fmt := _FORMATS.get(p.suffix.lower())) is None:
        raise ValueError(f"draw: {str(p)!r} names no format; end the path in one of {sorted(_FORMATS)}")
    p.write_bytes(_render(out, fmt, grads, max_nodes))
    return p


def svg(out: Any, grads: Any = None, max_nodes: int = 500) -> str:
    """The graph of ``out`` drawn as SVG text (needs the ``viz`` extra, like :func:`draw`)."""
    return _render(out, "svg", grads, max_nodes).decode("utf-8")


def repr_svg(node: Any) -> str | None:
    """SVG for Jupyter's ``_repr_svg_``; None (the text repr) without graphviz or when too large."""
    try:
        return svg(node)
    except (ImportError, ValueError, RuntimeError, OSError):
        return None
