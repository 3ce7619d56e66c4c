"""Seeing graphs: DOT export, drawing, formulas, a backprop lesson, statistics.

Every walk is iterative and linear in the graph. DOT ids are generated (``n0``, ``n1``,
arguments first); user text (dict keys, primitive names) goes only into escaped, quoted
labels of ``box`` nodes, where ``<>{}|`` are plain text. Constants are folded into their
op's label, ``pow(_, 2)``. Inputs are named by tree path: ``w[3]``, ``b`` for one dict
argument, ``x`` for one number, ``x0``, ``x1.w`` for several arguments.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fgrad.engine.core import Expr
from fgrad.engine.trace import Trace, traced
from fgrad.engine.tree import TreeDef, tree_flatten, tree_leaves, tree_paths
from fgrad.transforms.edges import check_scalar, trace_inputs
from fgrad.transforms.graph import backward, reachable

__all__ = ["to_dot", "draw", "svg", "repr_svg", "formula", "explain", "graph_stats", "GraphStats"]

_COMMUTATIVE = frozenset({"add", "mul", "sum", "maximum", "minimum"})
_INFIX = {"add": (" + ", 1), "sub": (" - ", 1), "mul": (" * ", 2), "div": (" / ", 2), "pow": (" ** ", 4)}
_NEG, _ATOM = 3, 5  # precedences of unary minus and of names, calls, numbers
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_ESCAPES = {c: f"\\\\x{c:02x}" for c in (*range(32), 127)}  # shown as text, e.g. \x0d
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n"})


def _peel(x: Any) -> Any:
    while type(x) is Expr:
        x = x.value
    return x


def _num(x: Any, digits: int = 6) -> str:
    v = _peel(x)
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


def _leaf_names(nodes: list[Expr], bases: Sequence[str] | None = None) -> list[str | None]:
    """Aligned with ``nodes``: each input's tree path, None for op nodes."""
    cache: dict[int, list[str]] = {}
    out: list[str | None] = [None] * len(nodes)
    for i, n in enumerate(nodes):
        if n.prim is None:
            t = n.trace
            names = cache.get(id(t)) or cache.setdefault(id(t), _arg_names(t.in_tree, bases))
            out[i] = names[n.seq] if n.seq < len(names) else f"input{n.seq}"
    return out


def _prefix(taken: Iterable[str | None]) -> str:
    """A prefix p (t, tt, ...) such that no name in ``taken`` is p followed by digits."""
    clash = {n.rstrip("0123456789") for n in taken if n and n[-1].isdigit()}
    return next("t" * k for k in range(1, len(clash) + 2) if "t" * k not in clash)


def _graph(out: Any) -> tuple[list[Any], TreeDef, list[Expr], dict[int, int]]:
    leaves, td = tree_flatten(out)
    return leaves, td, (nodes := reachable(leaves)), {id(n): i for i, n in enumerate(nodes)}


def _adjoints(nodes: list[Expr], out: Expr) -> list[Any]:
    """Adjoints of ``nodes`` (None for 0) for the scalar ``out``, by ``graph.backward`` itself (so
    they are fg.grad's), over a tape rebuilt from the graph so that closed traces work too."""
    tr = out.trace
    tape: list[Any] = [None] * (out.seq + 1)
    for n in nodes:
        if n.trace is tr and n.seq <= out.seq:
            tape[n.seq] = n
    cts = backward(tr, [(out, 1.0)], tape=tape)
    return [cts[n.seq] if n.trace is tr and n.seq <= out.seq else None for n in nodes]


def _steps(nodes: list[Expr], index: dict[int, int], out: Expr, adj: list[Any]) -> list[Any]:
    """The reverse pass as (node, input, local derivative, contribution, input's running total)."""
    steps, running = [], [0.0] * len(nodes)
    for i in range(index[id(out)], -1, -1):
        n, g = nodes[i], _peel(adj[i])
        if adj[i] is None or n.prim is None or n.prim.vjp is None or n.trace is not out.trace:
            continue
        xs, v = [_peel(a) for a in n.args], _peel(n.value)
        cts, local = n.prim.vjp(g, v, *xs), n.prim.vjp(1.0, v, *xs)  # vjps are linear in g
        for k, a in enumerate(n.args):
            if type(a) is Expr and a.trace is out.trace:
                j, c = index[id(a)], _product(cts[k])
                running[j] += 0.0 if c is None else c
                steps.append((i, j, _product(local[k]), c, running[j]))
    return steps


def _product(c: Any) -> Any:
    return c[0] * c[1] if type(c) is tuple else c  # a deferred product (Primitive(products=True))


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
        return _adjoints(nodes, outs[0])
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
    leaves, out_td, nodes, index = _graph(out)
    adj = _node_grads(leaves, nodes, grads)
    names = _leaf_names(nodes)
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
        label = f"{names[i] if n.prim is None else _op_head(n)}\nvalue {_num(n.value)}"
        if adj is not None and adj[i] is not None:
            label += f"\ngrad {_num(adj[i])}"
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


def formula(out: Any, max_depth: int = 24) -> str:
    """The graph of ``out`` as readable infix maths, linear in the graph's size.

    A subexpression used more than once, or nested ``max_depth`` deep, is named once
    on a ``let t1 = ...`` line; other ops are calls (``tanh(x)``, ``sum([a, b])``,
    ``dot([w0, w1], [x0, x1], b)``), numbers ``repr``s, several outputs ``out[0] = ...`` lines.

    >>> import fgrad as fg
    >>> def f(x):
    ...     y = x * x + 1.0
    ...     return y / -fg.exp(y - x)
    >>> print(formula(fg.trace(f)(2.0)))
    let t1 = x * x + 1.0
    t1 / -exp(t1 - x)
    """
    leaves, out_td, nodes, index = _graph(out)
    names = _leaf_names(nodes)
    uses, height = [0] * len(nodes), [0] * len(nodes)
    for a in [*leaves, *(a for n in nodes for a in n.args)]:
        if type(a) is Expr:
            uses[index[id(a)]] += 1
    prefix, bound = _prefix(names), []
    for i, n in enumerate(nodes):
        if n.prim is not None:
            kids = [height[j] for a in n.args if type(a) is Expr and names[j := index[id(a)]] is None]
            height[i] = 1 + max(kids, default=0)
            if uses[i] > 1 or height[i] >= max_depth:
                bound.append(i)
                names[i] = f"{prefix}{len(bound)}"

    def prec(a: Any) -> int:
        if type(a) is not Expr:
            return _NEG if repr(a).startswith("-") else _ATOM
        name, k = (a.prim.name, len(a.args)) if names[index[id(a)]] is None and a.prim else ("", 0)
        return _INFIX[name][1] if name in _INFIX and k == 2 else _NEG if name == "neg" and k == 1 else _ATOM

    def item(a: Any, paren: bool = False) -> list[Any]:
        it = index[id(a)] if type(a) is Expr else repr(a)
        return ["(", it, ")"] if paren else [it]

    def expand(i: int, stack: list[Any]) -> None:
        """Push the pieces of node ``i``'s text (strings, and indices of nodes to expand)."""
        n = nodes[i]
        name, args = n.prim.name if n.prim is not None else "input", n.args
        if name in _INFIX and len(args) == 2:
            op, p = _INFIX[name]
            lp = prec(args[0]) < p or (name == "pow" and prec(args[0]) == p)
            rp = prec(args[1]) < p if name == "pow" else prec(args[1]) <= p  # floats do not associate
            toks = [*item(args[0], lp), op, *item(args[1], rp)]
        elif name == "neg" and len(args) == 1:
            toks = ["-", *item(args[0], prec(args[0]) <= _NEG)]
        else:
            m = len(args) // 2 if name == "dot" else 0
            groups = [args[:m], args[m : 2 * m]] if m else [args] if name == "sum" else []
            toks = [f"{name}("]
            for g in groups:
                toks.append(", [" if len(toks) > 1 else "[")
                for k, a in enumerate(g):
                    toks += [", "] * (k > 0) + item(a)
                toks.append("]")
            for a in args[2 * m :] if name != "sum" else ():
                toks += [", "] * (len(toks) > 1) + item(a)
            toks.append(")")
        stack.extend(reversed(toks))

    parts: list[str] = []
    heads = [(f"let {names[j]} = ", j) for j in bound]
    heads += [(f"out{p} = " * (len(leaves) > 1), x) for p, x in zip(tree_paths(out_td), leaves, strict=True)]
    for k, (head, x) in enumerate(heads):
        parts.append(head)
        stack: list[Any] = [] if k < len(bound) else item(x)
        if k < len(bound):
            expand(x, stack)  # a let line defines its node
        while stack:
            it = stack.pop()
            if type(it) is str:
                parts.append(it)
            elif (name := names[it]) is not None:
                parts.append(name)
            else:
                expand(it, stack)
        parts.append("\n")
    return "".join(parts).rstrip("\n")


@dataclass(frozen=True)
class GraphStats:
    """Counts of a graph (see :func:`graph_stats`); ``per_primitive`` is sorted by name."""

    nodes: int
    leaves: int
    constants: int
    edges: int
    depth: int
    per_primitive: dict[str, int]

    def __str__(self) -> str:
        head = f"{self.nodes} nodes ({self.leaves} inputs, {self.nodes - self.leaves} ops), "
        head += f"{self.edges} edges, {self.constants} constant arguments, depth {self.depth}"
        return "\n".join([head, *_table([[f"  {k}", str(v)] for k, v in self.per_primitive.items()])])


def graph_stats(out: Any) -> GraphStats:
    """Count the graph of ``out``: nodes per primitive, inputs (``leaves``), edges, ``depth`` (the
    longest path, in nodes) and ``constants`` (non-node arguments, the 1.0 of ``x * x + 1.0``).

    >>> import fgrad as fg
    >>> s = graph_stats(fg.trace(lambda x: fg.tanh(x * x + 1.0))(0.5))
    >>> s.nodes, s.leaves, s.depth, s.per_primitive
    (4, 1, 4, {'add': 1, 'mul': 1, 'tanh': 1})
    """
    _, _, nodes, index = _graph(out)
    depth, per, constants, edges = [1] * len(nodes), Counter(n.prim.name for n in nodes if n.prim), 0, 0
    for i, n in enumerate(nodes):
        if n.prim is not None:
            for a in n.args:
                if type(a) is Expr:
                    edges += 1
                    depth[i] = max(depth[i], depth[index[id(a)]] + 1)
                else:
                    constants += 1
    n_leaves, per_primitive = sum(n.prim is None for n in nodes), dict(sorted(per.items()))
    return GraphStats(len(nodes), n_leaves, constants, edges, max(depth, default=0), per_primitive)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def explain(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    file: IO[str] | None = None,
    digits: int = 4,
    max_nodes: int = 200,
) -> Callable[..., str]:
    """Teach backprop on ``f``: print its forward values, then the reverse pass node by node.

    Returns a function of ``f``'s arguments that prints the tables to ``file``
    (default stdout) and returns their text; ``argnums`` as for ``fg.grad``,
    ``digits`` significant digits (17: exact), graphs over ``max_nodes`` refused.
    The adjoints are ``fg.grad``'s (its own reverse pass); here x is used twice.

    >>> import fgrad as fg
    >>> _ = explain(lambda x: x * fg.tanh(x))(0.5)
    forward pass (creation order)
    node  op     inputs  value
    x     input          0.5
    t1    tanh   x       0.4621
    t2    mul    x, t1   0.2311
    <BLANKLINE>
    reverse pass (reverse order, from t2.grad = 1; each input.grad += grad * local)
    node  grad  input  local   grad*local  input.grad now
    t2    1     x      0.4621  0.4621      0.4621
                t1     0.5     0.5         0.5
    t1    0.5   x      0.7864  0.3932      0.8553
    <BLANKLINE>
    gradients
    x  0.8553
    """
    wanted = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    code = getattr(f, "__code__", None)  # parameter names name the inputs
    params = code.co_varnames[: code.co_argcount] if code else ()

    def explained(*args: Any, **kwargs: Any) -> str:
        if not wanted or any(not -len(args) <= i < len(args) for i in wanted):
            raise ValueError(f"explain: argnums={argnums!r} but the call has {len(args)} positional args")
        nums = tuple(i % len(args) for i in wanted)

        def body(tr: Trace) -> tuple[Any, list[Expr]]:
            new_args, inputs, _ = trace_inputs(tr, "explain", args, nums)
            hint = "explain shows the reverse pass of one scalar; reduce the output with fg.sum"
            return check_scalar("explain", f(*new_args, **kwargs), hint), inputs

        out, inputs = traced("explain", body)
        bases = [params[i] for i in nums] if max(nums) < len(params) else None
        text = _lesson(out, inputs, bases, digits, max_nodes)
        print(text, end="", file=sys.stdout if file is None else file)
        return text

    return explained


def _lesson(out: Any, inputs: list[Expr], bases: list[str] | None, digits: int, max_nodes: int) -> str:
    if type(out) is not Expr or not inputs or out.trace is not inputs[0].trace:
        return f"the function returned {_num(out, digits)}, a constant: every gradient is 0\n"
    nodes = reachable([out, *inputs])
    if len(nodes) > max_nodes:
        raise ValueError(
            f"explain: the graph has {len(nodes)} nodes, too many to read (max_nodes="
            f"{max_nodes}); try a smaller function, or fg.graph_stats, or pass max_nodes="
        )
    index = {id(n): i for i, n in enumerate(nodes)}
    named = _leaf_names(nodes, bases)
    prefix, k, shown = _prefix(named), 0, []
    for name in named:
        k += name is None
        shown.append(f"{prefix}{k}" if name is None else name)

    def num(x: Any) -> str:
        return _num(0.0 if x is None else x, digits)

    def arg(a: Any) -> str:
        return shown[index[id(a)]] if type(a) is Expr else num(a)

    fwd = [["node", "op", "inputs", "value"]]
    fwd += [
        [shown[i], n.prim.name if n.prim else "input", ", ".join(map(arg, n.args)), num(n.value)]
        for i, n in enumerate(nodes)
    ]
    adj = _adjoints(nodes, out)
    steps = _steps(nodes, index, out, adj)
    rev = [["node", "grad", "input", "local", "grad*local", "input.grad now"]]
    for s, (i, j, local, c, total) in enumerate(steps):
        first = s == 0 or steps[s - 1][0] != i
        rev.append([shown[i] * first, num(adj[i]) * first, shown[j], num(local), num(c), num(total)])
    return (
        "\n".join(
            [
                "forward pass (creation order)",
                *_table(fwd),
                "",
                f"reverse pass (reverse order, from {arg(out)}.grad = 1; each input.grad += grad * local)",
                *_table(rev),
                "",
                "gradients",
                *_table([[arg(x), num(adj[index[id(x)]])] for x in inputs]),
            ]
        )
        + "\n"
    )
