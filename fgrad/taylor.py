"""Higher derivatives by Taylor mode: ``derivatives(f, order=n)(x)``.

``f`` is traced once; then truncated Taylor series ``c_0 + c_1 t + ... + c_n t^n``
of every node along ``x + t`` are propagated over the tape with the classic
recurrences (Cauchy products, and ``e' = a' e`` style rules for exp, log,
sin/cos, tanh, ...). ``f^(k)(x) = k! c_k``. That is O(n^2) work per node,
where n nested ``grad`` calls grow the graph exponentially with n.

A unary primitive without a rule here (a user's own) is handled through its
own derivatives at the point, by nested ``grad`` of that one primitive,
composed with the series of its argument.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from . import arith, ops
from .core import Expr, Primitive, Trace, traced
from .transforms import grad, trace_inputs

__all__ = ["derivatives", "TAYLOR_RULES"]

Series = list[Any]
Rule = Callable[..., Series]


def _mul(a: Series, b: Series) -> Series:
    return [sum((a[i] * b[k - i] for i in range(k + 1)), 0.0) for k in range(len(a))]


def _div(a: Series, b: Series) -> Series:
    q: Series = []
    for k in range(len(a)):
        acc = a[k]
        for j in range(1, k + 1):
            acc = acc - b[j] * q[k - j]
        q.append(arith.div(acc, b[0]))
    return q


def _flow(a: Series, first: Any, u_of: Callable[[Series, int], Any]) -> Series:
    """Solve ``y' = u(y) a'`` for y's series: ``y_k = sum_j (j/k) a_j u_{k-j}``.

    ``u_of(y, m)`` gives u's m-th coefficient from y's first m+1 ones.
    """
    y: Series = [first]
    u: Series = []
    for k in range(1, len(a)):
        u.append(u_of(y, k - 1))
        y.append(sum((j / k * a[j] * u[k - j] for j in range(1, k + 1)), 0.0))
    return y


def _exp(a: Series) -> Series:
    return _flow(a, ops.exp(a[0]), lambda y, m: y[m])


def _log(a: Series) -> Series:
    out: Series = [ops.log(a[0])]
    for k in range(1, len(a)):
        acc = a[k]
        for j in range(1, k):
            acc = acc - j / k * out[j] * a[k - j]
        out.append(arith.div(acc, a[0]))
    return out


def _sin_cos(a: Series) -> tuple[Series, Series]:
    s: Series = [ops.sin(a[0])]
    c: Series = [ops.cos(a[0])]
    for k in range(1, len(a)):
        s.append(sum((j / k * a[j] * c[k - j] for j in range(1, k + 1)), 0.0))
        c.append(-sum((j / k * a[j] * s[k - j] for j in range(1, k + 1)), 0.0))
    return s, c


def _square_coef(y: Series, m: int) -> Any:
    return sum((y[i] * y[m - i] for i in range(m + 1)), 0.0)


def _tanh(a: Series) -> Series:
    # tanh' = 1 - tanh^2
    return _flow(a, ops.tanh(a[0]), lambda y, m: (1.0 if m == 0 else 0.0) - _square_coef(y, m))


def _sigmoid(a: Series) -> Series:
    # sigmoid' = sigmoid - sigmoid^2
    return _flow(a, ops.sigmoid(a[0]), lambda y, m: y[m] - _square_coef(y, m))


def _sqrt(a: Series) -> Series:
    r: Series = [ops.sqrt(a[0])]
    for k in range(1, len(a)):
        acc = a[k]
        for j in range(1, k):
            acc = acc - r[j] * r[k - j]
        r.append(arith.div(acc, 2.0 * r[0]))
    return r


def _pow_const(a: Series, c: Series) -> Series:
    p = c[0]
    if isinstance(p, numbers.Integral) or (isinstance(p, float) and p.is_integer() and 0 <= p <= 64):
        # Exact powers by repeated products: the recurrence divides by a_0.
        n = int(p)
        if n >= 0:
            out = [1.0] + [0.0] * (len(a) - 1)
            for _ in range(n):
                out = _mul(out, a)
            return out
    y: Series = [arith.pow_const(a[0], p)]
    for k in range(1, len(a)):
        acc = sum(((p * j - (k - j)) * a[j] * y[k - j] for j in range(1, k + 1)), 0.0)
        y.append(arith.div(acc, k * a[0]))
    return y


def _select(a: Series, b: Series, wa: float) -> Series:
    if wa == 1.0:
        return list(a)
    if wa == 0.0:
        return list(b)
    return [(x + y) * 0.5 for x, y in zip(a, b)]


def _dot(*args: Series) -> Series:
    n = len(args) // 2
    total = list(args[-1]) if len(args) % 2 else [0.0] * len(args[0])
    for i in range(n):
        total = [t + p for t, p in zip(total, _mul(args[i], args[n + i]))]
    return total


def _zeros_after(x: Any, n: int) -> Series:
    return [x] + [0.0] * n


TAYLOR_RULES: dict[Primitive, Rule] = {
    arith.add: lambda a, b: [x + y for x, y in zip(a, b)],
    arith.sub: lambda a, b: [x - y for x, y in zip(a, b)],
    arith.mul: _mul,
    arith.div: _div,
    arith.neg: lambda a: [-x for x in a],
    arith.pow_const: _pow_const,
    arith.pow_: lambda a, b: _exp(_mul(b, _log(a))),
    arith.abs_: lambda a: [ops.abs_(a[0])] + [x * arith.sign(a[0]) for x in a[1:]],
    arith.exp: _exp,
    arith.log: _log,
    ops.tanh: _tanh,
    ops.sigmoid: _sigmoid,
    ops.sqrt: _sqrt,
    ops.sin: lambda a: _sin_cos(a)[0],
    ops.cos: lambda a: _sin_cos(a)[1],
    ops.relu: lambda a: list(a) if a[0] > 0 else _zeros_after(ops.relu(a[0]), len(a) - 1),
    ops.maximum: lambda a, b: [ops.maximum(a[0], b[0])] + _select(a, b, arith.share(a[0], b[0]))[1:],
    ops.minimum: lambda a, b: [ops.minimum(a[0], b[0])] + _select(a, b, arith.share(b[0], a[0]))[1:],
    arith.step: lambda a: _zeros_after(arith.step(a[0]), len(a) - 1),
    arith.sign: lambda a: _zeros_after(arith.sign(a[0]), len(a) - 1),
    arith.share: lambda a, b: _zeros_after(arith.share(a[0], b[0]), len(a) - 1),
    arith.sum_p: lambda *xs: [sum(col, 0.0) for col in zip(*xs)],
    arith.dot_p: _dot,
    ops.stop_gradient_p: lambda a: _zeros_after(a[0], len(a) - 1),
}
"""Taylor rules by primitive: series of the inputs -> series of the output.
Add an entry to give a primitive of your own a rule."""


def _by_composition(prim: Primitive, a: Series) -> Series:
    """Series of ``prim(a(t))`` from prim's own derivatives at ``a_0``."""
    n = len(a) - 1
    g: Callable[[Any], Any] = prim
    coefs = [prim(a[0])]
    for k in range(1, n + 1):
        g = grad(g)
        coefs.append(g(a[0]) / math.factorial(k))
    delta = [0.0] + list(a[1:])
    out = _zeros_after(coefs[0], n)
    power = _zeros_after(1.0, n)
    for k in range(1, n + 1):
        power = _mul(power, delta)
        out = [o + coefs[k] * p for o, p in zip(out, power)]
    return out


def derivatives(f: Callable[[Any], Any], order: int) -> Callable[[Any], list[Any]]:
    """``x -> [f(x), f'(x), ..., f^(order)(x)]`` for a scalar function of a scalar.

    Args:
        f: a function of one real number returning one.
        order: the highest derivative, a non-negative int.

    Returns:
        A function returning the ``order + 1`` derivatives at ``x``. It
        composes with the other transforms (``x`` may be a traced value).

    >>> [round(d, 12) for d in derivatives(lambda x: x ** 3, order=4)(2.0)]
    [8.0, 12.0, 12.0, 6.0, 0.0]
    """
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise ValueError(f"derivatives: order must be a non-negative int, got {order!r}")

    def all_derivatives(x: Any) -> list[Any]:
        if type(x) is not Expr and not (isinstance(x, numbers.Real) and not isinstance(x, bool)):
            raise TypeError(
                f"derivatives: x must be one real number, got a {type(x).__name__}; for "
                "functions of several variables or of pytrees use fg.hessian or nested fg.grad"
            )

        def body(tr: Trace) -> Series:
            (node,), _, _ = trace_inputs(tr, "derivatives", (x,), (0,))
            out = f(node)
            if type(out) is not Expr and not isinstance(out, numbers.Real):
                raise TypeError(
                    f"derivatives: f must return one scalar, got a {type(out).__name__}"
                )
            tape = tr.tape
            assert tape is not None
            series: list[Series | None] = [None] * len(tape)
            series[node.seq] = [node.value, 1.0] + [0.0] * (order - 1) if order else [node.value]
            for i in range(node.seq + 1, (out.seq + 1) if type(out) is Expr and out.trace is tr else 0):
                nd = tape[i]
                prim = nd.prim
                assert prim is not None
                args = [series[a.seq] if type(a) is Expr and a.trace is tr else _zeros_after(a, order)
                        for a in nd.args]
                rule = TAYLOR_RULES.get(prim)
                if rule is not None:
                    series[i] = rule(*args)
                elif len(args) == 1:
                    series[i] = _by_composition(prim, args[0])  # type: ignore[arg-type]
                else:
                    raise TypeError(
                        f"derivatives: primitive {prim.name!r} has no Taylor rule; add one to "
                        "fgrad.taylor.TAYLOR_RULES, or use nested fg.grad"
                    )
            if type(out) is Expr and out.trace is tr:
                coefs = series[out.seq]
                assert coefs is not None
            else:
                coefs = _zeros_after(out, order)
            return coefs

        coefs = traced("derivatives", body)
        return [c if k == 0 else c * math.factorial(k) for k, c in enumerate(coefs)]

    return all_derivatives
