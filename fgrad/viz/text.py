"""Graphs as text: :func:`formula` writes one as infix maths, :func:`explain` teaches its reverse pass."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from fgrad.engine.core import Expr
from fgrad.engine.trace import Trace, traced
from fgrad.engine.tree import tree_paths
from fgrad.transforms.edges import check_scalar, trace_inputs
from fgrad.transforms.graph import reachable
from fgrad.viz.common import adjoints, graph_of, leaf_names, peel, show_number, table, temp_prefix

_INFIX = {"add": (" + ", 1), "sub": (" - ", 1), "mul": (" * ", 2), "div": (" / ", 2), "pow": (" ** ", 4)}
_NEG, _ATOM = 3, 5  # precedences of unary minus and of names, calls, numbers


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
    leaves, out_td, nodes, index = graph_of(out)
    names = leaf_names(nodes)
    uses, height = [0] * len(nodes), [0] * len(nodes)
    for a in [*leaves, *(a for n in nodes for a in n.args)]:
        if type(a) is Expr:
            uses[index[id(a)]] += 1
    prefix, bound = temp_prefix(names), []
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
        return f"the function returned {show_number(out, digits)}, a constant: every gradient is 0\n"
    nodes = reachable([out, *inputs])
    if len(nodes) > max_nodes:
        raise ValueError(
            f"explain: the graph has {len(nodes)} nodes, too many to read (max_nodes="
            f"{max_nodes}); try a smaller function, or fg.graph_stats, or pass max_nodes="
        )
    index = {id(n): i for i, n in enumerate(nodes)}
    named = leaf_names(nodes, bases)
    prefix, k, shown = temp_prefix(named), 0, []
    for name in named:
        k += name is None
        shown.append(f"{prefix}{k}" if name is None else name)

    def num(x: Any) -> str:
        return show_number(0.0 if x is None else x, digits)

    def arg(a: Any) -> str:
        return shown[index[id(a)]] if type(a) is Expr else num(a)

    fwd = [["node", "op", "inputs", "value"]]
    fwd += [
        [shown[i], n.prim.name if n.prim else "input", ", ".join(map(arg, n.args)), num(n.value)]
        for i, n in enumerate(nodes)
    ]
    adj = adjoints(nodes, out)
    steps = _steps(nodes, index, out, adj)
    rev = [["node", "grad", "input", "local", "grad*local", "input.grad now"]]
    for s, (i, j, local, c, total) in enumerate(steps):
        first = s == 0 or steps[s - 1][0] != i
        rev.append([shown[i] * first, num(adj[i]) * first, shown[j], num(local), num(c), num(total)])
    return (
        "\n".join(
            [
                "forward pass (creation order)",
                *table(fwd),
                "",
                f"reverse pass (reverse order, from {arg(out)}.grad = 1; each input.grad += grad * local)",
                *table(rev),
                "",
                "gradients",
                *table([[arg(x), num(adj[index[id(x)]])] for x in inputs]),
            ]
        )
        + "\n"
    )


def _steps(nodes: list[Expr], index: dict[int, int], out: Expr, adj: list[Any]) -> list[Any]:
    """The reverse pass as (node, input, local derivative, contribution, input's running total)."""
    steps, running = [], [0.0] * len(nodes)
    for i in range(index[id(out)], -1, -1):
        n, g = nodes[i], peel(adj[i])
        if adj[i] is None or n.prim is None or n.prim.vjp is None or n.trace is not out.trace:
            continue
        xs, v = [peel(a) for a in n.args], peel(n.value)
        cts, local = n.prim.vjp(g, v, *xs), n.prim.vjp(1.0, v, *xs)  # vjps are linear in g
        for k, a in enumerate(n.args):
            if type(a) is Expr and a.trace is out.trace:
                j, c = index[id(a)], _product(cts[k])
                running[j] += 0.0 if c is None else c
                steps.append((i, j, _product(local[k]), c, running[j]))
    return steps


def _product(c: Any) -> Any:
    return c[0] * c[1] if type(c) is tuple else c  # a deferred product (Primitive(products=True))
