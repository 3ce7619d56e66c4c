"""Graph walks: reachability, and the reverse and forward passes over a tape.

A trace's tape lists its nodes in creation order, which is a topological
order, so both passes are single loops over it: no sort, no recursion, and
per-node state in lists indexed by ``seq``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from fgrad.engine import core, errors
from fgrad.engine.core import Expr, bind
from fgrad.engine.trace import Trace
from fgrad.engine.tree import tree_leaves
from fgrad.primitives.reductions import dot_p, sum_p

__all__ = ["backward", "forward", "reachable", "count_nodes"]


class RuleError(TypeError):
    """A primitive's rule returned something of the wrong shape."""


def backward(trace: Trace, seeds: Iterable[tuple[Any, Any]], tape: list[Expr] | None = None) -> list[Any]:
    """Reverse pass: cotangents of every node of ``trace`` (None for zero).

    Contributions to a node are collected and combined once, when the node
    is reached: plain ones with one n-ary ``sum``, deferred products (see
    ``Primitive(products=True)``) with one ``dot``. Under nesting or jit that
    makes one node per weight instead of a chain of additions.

    Args:
        trace: the trace whose nodes are differentiated.
        seeds: ``(output, cotangent)`` pairs; outputs that are not nodes of
            ``trace`` (constants, nodes of other traces) are ignored.
        tape: the trace's tape, for a trace that has closed (vjp keeps it).

    Returns:
        A list indexed by ``seq``; entries of input nodes are their gradients.
    """
    tape = trace.tape if tape is None else tape
    assert tape is not None
    cts: list[Any] = [None] * len(tape)
    last = -1
    for out, g in seeds:
        if type(out) is Expr and out.trace is trace and g is not None:
            _add(cts, out.seq, g)
            last = max(last, out.seq)
    # Per-node work is the cost of the reverse pass: no zip, no per-arg
    # function calls; unary and binary nodes get the argument loop unrolled.
    # At level 1 every cotangent is a plain number, so contributions are
    # combined by the primitives' impls directly (no bind, same arithmetic).
    eager = trace.level == 1
    settle = trace.settle  # the numpy backend's hook: a vmap traced a batch in this transform
    for i in range(last, -1, -1):
        g = cts[i]
        if g is None:
            continue
        if settle is not None:
            cts[i] = g = settle(g, tape[i], _combine)
        elif type(g) is list or type(g) is tuple:
            cts[i] = g = _combine(g, eager)
        node = tape[i]
        prim = node.prim
        if prim is None:
            continue
        args = node.args
        rule = prim.vjp
        if rule is None:
            raise RuleError(
                f"primitive {prim.name!r} has no vjp rule, so it cannot be differentiated in reverse mode"
            )
        n = len(args)
        if n == 2 and not prim.products:
            a, b = args
            a_in = type(a) is Expr and a.trace is trace
            b_in = type(b) is Expr and b.trace is trace
            pair = rule(g, node.value, a.value if a_in else a, b.value if b_in else b)
            if type(pair) is not tuple or len(pair) != 2:
                raise _bad_rule(prim.name, pair, 2)
            if not prim.trusted:
                _check_outputs(prim, pair, trace.settle is not None)
            if core.DEBUG_NANS:
                _check_rule(prim, pair, (g, node.value, a, b))
            ca, cb = pair
            if a_in and ca is not None:
                _add(cts, a.seq, ca)
            if b_in and cb is not None:
                _add(cts, b.seq, cb)
            continue
        if n == 1 and not prim.products:
            a = args[0]
            if type(a) is not Expr or a.trace is not trace:
                continue
            one = rule(g, node.value, a.value)
            if type(one) is not tuple or len(one) != 1:
                raise _bad_rule(prim.name, one, 1)
            if not prim.trusted:
                _check_outputs(prim, one, trace.settle is not None)
            if core.DEBUG_NANS:
                _check_rule(prim, one, (g, node.value, a))
            if one[0] is not None:
                _add(cts, a.seq, one[0])
            continue
        xs = [a.value if type(a) is Expr and a.trace is trace else a for a in args]
        many = rule(g, node.value, *xs)
        if type(many) is not tuple or len(many) != n:
            raise _bad_rule(prim.name, many, n)
        if not prim.trusted:
            _check_outputs(prim, many, trace.settle is not None)
        if core.DEBUG_NANS:
            _check_rule(prim, many, (g, node.value, *xs))
        for k in range(n):
            c = many[k]
            if c is not None:
                a = args[k]
                if type(a) is Expr and a.trace is trace:
                    j = a.seq  # _add, inlined: this loop runs per argument
                    old = cts[j]
                    if old is None:
                        cts[j] = c
                    elif type(old) is list:
                        old.append(c)
                    else:
                        cts[j] = [old, c]
    return cts


def _check_outputs(prim: Any, results: tuple[Any, ...], batched: bool, kind: str = "vjp") -> None:
    """What a user's rule returned: numbers, traced values or None (and
    deferred products of those, for a primitive declared with them)."""
    for k, c in enumerate(results):
        if c is None or type(c) is float or type(c) is Expr:
            continue
        parts = c if type(c) is tuple and prim.products and len(c) == 2 and kind == "vjp" else (c,)
        for x in parts:
            if not (
                type(x) is Expr
                or (isinstance(x, numbers.Real) and not isinstance(x, bool))
                or (batched and core._is_array(x))
            ):
                what = f"the cotangent of input {k}" if kind == "vjp" else "the output tangent"
                raise RuleError(
                    f"the {kind} rule of primitive {prim.name!r} returned {errors.describe(x)} as {what}; "
                    f"a {'cotangent' if kind == 'vjp' else 'tangent'} is one number or traced value "
                    "(or None for zero), computed with fgrad's operations"
                )


def _check_rule(prim: Any, results: tuple[Any, ...], inputs: tuple[Any, ...], kind: str = "vjp") -> None:
    """debug_nans in the reverse and forward passes: a rule's nan output."""
    for c in results:
        v = core._peel(c[0] * c[1] if type(c) is tuple else c)
        if v is not None and v != v:
            core.nan_found(prim, tuple(x for x in inputs if x is not None), f" ({kind} rule)")


def _add(cts: list[Any], j: int, c: Any) -> None:
    """Collect contribution ``c`` to node ``j``: a value, a deferred
    product (a 2-tuple), or a list of those once there are several."""
    old = cts[j]
    if old is None:
        cts[j] = c
    elif type(old) is list:
        old.append(c)
    else:
        cts[j] = [old, c]


def _combine(items: Any, eager: bool) -> Any:
    """The total of a node's contributions (see :func:`_add`)."""
    if type(items) is tuple:
        return items[0] * items[1]
    plain = [c for c in items if type(c) is not tuple]
    if len(plain) < len(items):
        pairs = [c for c in items if type(c) is tuple]
        if len(pairs) == 1:
            fused = pairs[0][0] * pairs[0][1]
        else:
            gs, xs = zip(*pairs)
            fused = dot_p.impl(*gs, *xs) if eager else bind(dot_p, *gs, *xs)
        if not plain:
            return fused
        plain.append(fused)
    if len(plain) == 1:
        return plain[0]
    return sum_p.impl(*plain) if eager else bind(sum_p, *plain)


def _bad_rule(name: str, got: Any, n: int, kind: str = "vjp") -> RuleError:
    shown = f"a tuple of {len(got)}" if isinstance(got, tuple) else f"a {type(got).__name__}"
    return RuleError(
        f"the {kind} rule of primitive {name!r} returned {shown} but the primitive "
        f"has {n} input(s): return a tuple with one cotangent (or None) per input"
    )


def forward(trace: Trace, tangents: Sequence[tuple[Expr, Any]], tape: list[Expr] | None = None) -> list[Any]:
    """Forward pass: tangents of every node of ``trace`` (None for zero).

    Args:
        trace: the trace whose nodes are differentiated.
        tangents: ``(leaf, tangent)`` pairs seeding the pass.
        tape: the trace's tape, for a trace that has closed (linearize keeps it).

    Returns:
        A list indexed by ``seq``.
    """
    tape = trace.tape if tape is None else tape
    assert tape is not None
    dts: list[Any] = [None] * len(tape)
    for leaf, dx in tangents:
        dts[leaf.seq] = dx
    for i in range(len(tape)):
        node = tape[i]
        prim = node.prim
        if prim is None:
            continue
        args = node.args
        dxs = tuple([dts[a.seq] if type(a) is Expr and a.trace is trace else None for a in args])
        if all(d is None for d in dxs):
            continue
        rule = prim.jvp
        if rule is None:
            raise RuleError(
                f"primitive {prim.name!r} has no jvp rule, so it cannot be differentiated in forward mode"
            )
        if not prim.symbolic_zeros:  # the rule sees what the maths means: a constant's tangent is 0
            dxs = tuple([0.0 if d is None else d for d in dxs])
        xs = [a.value if type(a) is Expr and a.trace is trace else a for a in args]
        dts[i] = rule(dxs, node.value, *xs)
        if not prim.trusted:
            _check_outputs(prim, (dts[i],), trace.settle is not None, "jvp")
        if core.DEBUG_NANS:
            _check_rule(prim, (dts[i],), (*dxs, node.value, *xs), "jvp")
    return dts


def reachable(outputs: Iterable[Any]) -> list[Expr]:
    """All distinct nodes reachable from ``outputs`` through ``args``.

    Returns them in an order where every node comes after its arguments
    (lower trace levels first, then creation order). Iterative: any depth.
    """
    seen: dict[int, Expr] = {}
    stack = [x for x in outputs if type(x) is Expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(a for a in node.args if type(a) is Expr and id(a) not in seen)
    return sorted(seen.values(), key=lambda n: (n.trace.level, n.seq))


def count_nodes(out: Any) -> int:
    """How many distinct nodes the graph of ``out`` has (inputs included).

    Args:
        out: a node or any pytree of nodes (as returned by ``fg.trace``).

    >>> import fgrad as fg
    >>> out = fg.trace(lambda x: x * x + x)(3.0)
    >>> count_nodes(out)
    3
    """
    return len(reachable(tree_leaves(out)))
