"""The primitives beyond arithmetic, each declared once with all of its rules.

Every op works on plain floats (and returns a float) as well as on nodes.
Numerics follow IEEE-754 as numpy and JAX do: a domain error gives nan and
overflow gives inf, never a Python exception. At kinks:
``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` split a tie
0.5/0.5, and ``sqrt'(0) = inf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .arith import (
    abs_,
    add,
    div,
    dot_p,
    exp,
    log,
    mul,
    mul_log,
    neg,
    nonzero,
    pow_,
    pow_const,
    scaled,
    share,
    sign,
    step,
    sub,
    sum_p,
)
from .core import Expr, Primitive, bind

__all__ = [
    "add", "sub", "mul", "div", "neg", "power", "abs_", "exp", "log", "tanh",
    "relu", "sigmoid", "sqrt", "sin", "cos", "maximum", "minimum", "sum",
    "dot", "mean", "stop_gradient", "PRIMITIVES",
]

_nan = math.nan


def power(x: Any, y: Any) -> Any:
    """``x ** y`` with IEEE results (``0 ** -1 = inf``, ``(-8) ** 0.5 = nan``).

    >>> power(0.0, -1.0), power(2.0, 10)
    (inf, 1024.0)
    """
    if type(y) is not Expr:
        return bind(pow_const, x, y)
    return bind(pow_, x, y)


tanh = Primitive(
    "tanh",
    impl=math.tanh,
    vjp=lambda g, out, x: (g * (1.0 - out * out),),
    jvp=lambda dxs, out, x: dxs[0] * (1.0 - out * out),
)


def _relu_impl(x: float) -> float:
    if x > 0:
        return x
    return x if x != x else 0.0  # nan stays nan


relu = Primitive(
    "relu",
    impl=_relu_impl,
    vjp=lambda g, out, x: (scaled(g, step(x)),),
    jvp=lambda dxs, out, x: scaled(dxs[0], step(x)),
)


def _sigmoid_impl(x: float) -> float:
    # Two branches so that exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    if x != x:
        return x
    e = math.exp(x)
    return e / (1.0 + e)


sigmoid = Primitive(
    "sigmoid",
    impl=_sigmoid_impl,
    vjp=lambda g, out, x: (g * (out * (1.0 - out)),),
    jvp=lambda dxs, out, x: dxs[0] * (out * (1.0 - out)),
)


def _sqrt_impl(x: float) -> float:
    return math.sqrt(x) if x >= 0 else _nan


sqrt = Primitive(
    "sqrt",
    impl=_sqrt_impl,
    vjp=lambda g, out, x: (div(g, 2.0 * out),),
    jvp=lambda dxs, out, x: div(dxs[0], 2.0 * out),
)


def _trig(f: Any) -> Any:
    def impl(x: float) -> float:
        try:
            return f(x)  # type: ignore[no-any-return]
        except ValueError:  # sin(inf)
            return _nan

    return impl


sin: Primitive = Primitive(
    "sin",
    impl=_trig(math.sin),
    vjp=lambda g, out, x: (g * cos(x),),
    jvp=lambda dxs, out, x: dxs[0] * cos(x),
)
cos: Primitive = Primitive(
    "cos",
    impl=_trig(math.cos),
    vjp=lambda g, out, x: (-(g * sin(x)),),
    jvp=lambda dxs, out, x: -(dxs[0] * sin(x)),
)


def _max_impl(x: float, y: float) -> float:
    if x > y:
        return x
    if y > x or y != y:
        return y
    return x  # equal, or x is nan


def _min_impl(x: float, y: float) -> float:
    if x < y:
        return x
    if y < x or y != y:
        return y
    return x


def _max_vjp(g: Any, wx: Any) -> tuple[Any, Any]:
    return scaled(g, wx), scaled(g, 1.0 - wx)


def _max_jvp(dxs: tuple[Any, ...], wx: Any) -> Any:
    dx, dy = dxs
    a = None if dx is None else scaled(dx, wx)
    b = None if dy is None else scaled(dy, 1.0 - wx)
    if a is None:
        return b
    return a if b is None else a + b


maximum = Primitive(
    "maximum",
    impl=_max_impl,
    vjp=lambda g, out, x, y: _max_vjp(g, share(x, y)),
    jvp=lambda dxs, out, x, y: _max_jvp(dxs, share(x, y)),
)
minimum = Primitive(
    "minimum",
    impl=_min_impl,
    vjp=lambda g, out, x, y: _max_vjp(g, share(y, x)),
    jvp=lambda dxs, out, x, y: _max_jvp(dxs, share(y, x)),
)


def sum(xs: Iterable[Any]) -> Any:  # noqa: A001 - the maths name, as in numpy
    """Sum of an iterable as ONE n-ary node (``builtins.sum`` makes n - 1).

    Args:
        xs: floats and/or nodes.

    Returns:
        A float, or a node whose backward pass hands ``g`` to every term.

    >>> sum([1.0, 2.0, 3.5])
    6.5
    """
    whole = getattr(xs, "_fgrad_sum", None)
    if whole is not None:
        return whole()  # vmap's batched result: one node
    terms = tuple(xs)
    if not terms:
        return 0.0
    return bind(sum_p, *terms)


def mean(xs: Iterable[Any]) -> Any:
    """Arithmetic mean: ``fg.sum(xs) / len(xs)`` (two nodes).

    >>> mean([1.0, 2.0, 6.0])
    3.0
    """
    terms = tuple(xs)
    if not terms:
        raise ValueError("mean: xs is empty; the mean of no values is undefined")
    whole = getattr(xs, "_fgrad_sum", None)
    total = whole() if whole is not None else bind(sum_p, *terms)  # one node for vmap's batch
    return div(total, float(len(terms)))


def dot(ws: Iterable[Any], xs: Iterable[Any], bias: Any = None) -> Any:
    """``bias + sum(w * x)`` as one node: a neuron's weighted sum.

    Args:
        ws: weights (floats or nodes).
        xs: inputs, as many as ``ws``.
        bias: optional term added first, as a neuron's bias.

    Returns:
        A float, or one node.

    >>> dot([1.0, 2.0], [3.0, 4.0], bias=0.5)
    11.5
    """
    ws, xs = tuple(ws), tuple(xs)
    if len(ws) != len(xs):
        raise ValueError(
            f"dot: ws has {len(ws)} entries but xs has {len(xs)}; pass sequences of the same length"
        )
    if bias is None:
        return bind(dot_p, *ws, *xs) if ws else 0.0
    return bind(dot_p, *ws, *xs, bias)


stop_gradient_p = Primitive(
    "stop_gradient",
    impl=lambda x: x,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
)


def stop_gradient(x: Any) -> Any:
    """The value of ``x`` with a zero derivative, at every order.

    >>> stop_gradient(3.0)
    3.0
    """
    return bind(stop_gradient_p, x)


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (add, sub, mul, div, neg, pow_, abs_, exp, log, tanh, relu, sigmoid,
              sqrt, sin, cos, maximum, minimum, sum_p, dot_p)
}
PRIMITIVES["pow_const"] = pow_const
PRIMITIVES["stop_gradient"] = stop_gradient_p
PRIMITIVES.update({"step": step, "sign": sign, "share": share, "mul_log": mul_log, "nonzero": nonzero})
for _p in PRIMITIVES.values():
    _p.symbolic_zeros = True  # fgrad's own jvp rules skip the work of inputs without a tangent

