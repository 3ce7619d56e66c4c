"""Higher derivatives by Taylor mode: ``derivatives(f, order=n)(x)``.

``f`` is traced once; then truncated Taylor series ``c_0 + c_1 t + ... + c_n t^n``
of every node along ``x + t`` are propagated over the tape, one rule per
primitive, and ``f^(k)(x) = k! c_k``: O(n^2) work per node, where n nested
``grad`` calls grow the graph exponentially with n. ``c_0`` is each node's own
value; the derivatives are nested ``grad``'s wherever those are not nan,
infinities included. What keeps it so at the edges:

- Exact zeros are structural: a constant's coefficients beyond ``c_0`` and the
  input's beyond ``c_1`` are None, skipped (as the reverse pass skips a None
  cotangent), never multiplied: no ``0 * inf``.
- The recurrences run where the point is regular (finite coefficients, ``c_0``
  inside the domain). Elsewhere, and for a primitive without a Taylor rule,
  a node's series is derived exactly: nested differentiation in t, by the
  primitive's own vjp (or jvp) rule, of ``prim(a_1(t), ..., a_m(t))``, each
  input polynomial a primitive whose j-th derivative at 0 is ``j! a_ij``.
- A derivative that is inf or nan sends the tape to nested differentiation:
  infinities meet in another order there (it adds cotangents before it
  multiplies: ``(1 + x) * inf`` at x = 0, where a series has ``1 * inf + 0 *
  inf``), so they may give another value. That costs what nested grad costs,
  and is done up to order 10 (beyond, Taylor mode's own values stand).
- Sums add one term at a time, left to right (``sum()`` of floats is
  compensated since Python 3.12), so jit's compiled code gives the same bits.

Rules of your own: ``Primitive(..., taylor=rule)`` or ``TAYLOR_RULES[prim] = rule``,
``rule(*series)`` taking a list of ``n + 1`` coefficients per input (``0.0`` for
a zero), returning the output's (whose ``c_0`` is replaced by the value).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from fgrad.engine.core import Expr, Primitive, bind
from fgrad.engine.trace import Trace, traced
from fgrad.transforms.edges import check_callable, check_scalar, lower, trace_inputs
from fgrad.transforms.taylor.exact import _exact, _nested
from fgrad.transforms.taylor.series import (
    _BUILTIN,
    _FACTORIAL,
    _MAX_ORDER,
    _NESTED_MAX_ORDER,
    TAYLOR_RULES,
    Rule,
    Series,
    _constant,
    _finite,
)

__all__ = ["derivatives", "TAYLOR_RULES"]


def _is_number(c: Any) -> bool:
    return type(c) is Expr or (isinstance(c, numbers.Real) and not isinstance(c, bool))


def _by_rule(prim: Primitive, rule: Rule, where: str, args: list[Series], out: Any) -> Series:
    got = rule(*([0.0 if c is None else c for c in s] for s in args))
    n = len(args[0])
    if not isinstance(got, (list, tuple)) or len(got) != n:
        shown = f"a {type(got).__name__}" + (f" of {len(got)}" if isinstance(got, (list, tuple)) else "")
    else:
        bad = [k for k, c in enumerate(got) if not _is_number(c)]
        if not bad:
            return [out, *got[1:]]
        shown = f"a {type(got[bad[0]]).__name__} at index {bad[0]}"
    raise TypeError(
        f"derivatives: the Taylor rule of primitive {prim.name!r} ({where}) returned {shown}; it must "
        f"return a list of {n} coefficients (numbers or traced values), c_k = (k-th derivative) / k!"
    )


def _node_series(prim: Primitive, args: list[Series], out: Any) -> Series:
    if all(c is None for s in args for c in s[1:]):
        return _constant(out, *args)  # no input varies with x
    rule = prim.taylor or TAYLOR_RULES.get(prim)
    if rule is not None:
        return _by_rule(prim, rule, "its taylor=" if prim.taylor else "in taylor.TAYLOR_RULES", args, out)
    builtin = _BUILTIN.get(prim)
    got = None if builtin is None else builtin(out, *args)
    return _exact(prim, args, out) if got is None else got


def derivatives(f: Callable[[Any], Any], order: int) -> Callable[[Any], list[Any]]:
    """``x -> [f(x), f'(x), ..., f^(order)(x)]`` for a scalar function of a scalar.

    Args:
        f: a function of one real number returning one.
        order: the highest derivative, an int from 0 to 170.

    Returns:
        A function returning the ``order + 1`` derivatives at ``x``: ``f(x)``
        itself, then the ones nested ``grad`` gives wherever those are not nan
        (infinities included, to order 10: see the module doc). It composes
        with the other transforms (``x`` may be a traced value).

    >>> [round(d, 12) for d in derivatives(lambda x: x ** 3, order=4)(2.0)]
    [8.0, 12.0, 12.0, 6.0, 0.0]
    """
    check_callable("derivatives", f)
    if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= _MAX_ORDER:
        raise ValueError(
            f"derivatives: order must be a non-negative int, at most {_MAX_ORDER} ({_MAX_ORDER + 1}! "
            f"overflows a float), got {order!r}"
        )

    def all_derivatives(x: Any) -> list[Any]:
        if type(x) is not Expr and not (isinstance(x, numbers.Real) and not isinstance(x, bool)):
            raise TypeError(
                f"derivatives: x must be one real number, got a {type(x).__name__}; for "
                "functions of several variables or of pytrees use fg.hessian or nested fg.grad"
            )

        def body(tr: Trace) -> list[Any]:
            (node,), _, _ = trace_inputs(tr, "derivatives", (x,), (0,))
            out = f(node)
            if not _is_number(out):
                raise TypeError(f"derivatives: f must return one scalar, got a {type(out).__name__}")
            if type(out) is Expr and out.trace is tr:
                return _taylor(tr, node, out, order)
            value = check_scalar("derivatives", lower(tr, out), "return one number")  # f does not depend on x
            return [value] + [0.0] * order

        return traced("derivatives", body)

    return all_derivatives


def _taylor(tr: Any, x: Expr, out: Expr, order: int) -> list[Any]:
    """``out``'s derivatives in ``x``, from the series of the nodes it needs."""
    tape = tr.tape
    needed = [False] * (out.seq + 1)
    needed[out.seq] = True
    for i in range(out.seq, x.seq, -1):
        if needed[i]:
            for a in tape[i].args:
                if type(a) is Expr and a.trace is tr:
                    needed[a.seq] = True
    nodes = [(nd, nd.prim) for nd in tape[x.seq + 1 : out.seq + 1] if needed[nd.seq] and nd.prim]
    series: list[Series] = [[]] * (out.seq + 1)
    series[x.seq] = [x.value, 1.0] + [None] * (order - 1) if order else [x.value]
    for nd, prim in nodes:
        args = [series[a.seq] if type(a) is Expr and a.trace is tr else [a] + [None] * order for a in nd.args]
        series[nd.seq] = _node_series(prim, args, nd.value)
    ds = [0.0 if c is None else c if k < 2 else c * _FACTORIAL[k] for k, c in enumerate(series[out.seq])]
    if order <= _NESTED_MAX_ORDER and not _finite(ds[1:]) and all(p.vjp is not None for _, p in nodes):
        # where infinities meet, nested grad's grouping may find another value (module doc)
        nested = _nested(_replay(tr, x, out, nodes), x.value, order, True)
        ds = [out.value] + [0.0 if d is None else d for d in nested]
    return ds


def _replay(tr: Any, x: Expr, out: Expr, nodes: list[tuple[Expr, Primitive]]) -> Callable[[Any], Any]:
    """The recorded nodes as a function of x (with the branches f took)."""

    def replay(t: Any) -> Any:
        values: dict[int, Any] = {x.seq: t}
        for nd, prim in nodes:
            values[nd.seq] = bind(
                prim, *(values[a.seq] if type(a) is Expr and a.trace is tr else a for a in nd.args)
            )
        return values[out.seq]

    return replay
