"""The primitives beyond arithmetic, each declared once with all of its rules.

Every op works on plain floats (and returns a float) as well as on nodes.
Numerics follow IEEE-754 as numpy and JAX do: a domain error gives nan and
overflow gives inf, never a Python exception. At kinks:
``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` split a tie
0.5/0.5, and ``sqrt'(0) = inf``.
"""

from __future__ import annotations

import builtins
import math
import numbers
from collections.abc import Iterable
from typing import Any

from fgrad.engine import errors
from fgrad.engine.core import Expr, Primitive, _is_array, bind
from fgrad.primitives.arith import (
    abs_,
    add,
    div,
    dot_p,
    exp,
    floordiv,
    log,
    mul,
    neg,
    pow_,
    pow_const,
    pow_log,
    share,
    sign,
    step,
    sub,
    sum_p,
)
from fgrad.primitives.arith import mod as mod_p

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "power",
    "abs_",
    "exp",
    "log",
    "tanh",
    "relu",
    "sigmoid",
    "sqrt",
    "sin",
    "cos",
    "maximum",
    "minimum",
    "sum",
    "dot",
    "mean",
    "stop_gradient",
    "floor",
    "ceil",
    "trunc",
    "round",
    "floor_divide",
    "mod",
    "PRIMITIVES",
]

_nan = math.nan


def power(x: Any, y: Any) -> Any:
    """``x ** y`` with IEEE results (``0 ** -1 = inf``, ``(-8) ** 0.5 = nan``).

    At ``x = 0`` its derivatives follow two conventions, at every order and in
    either order of differentiation: a term with a factor ``log(x)`` is 0
    (``d/dy x ** y = 0``, as in JAX) and a term with a zero coefficient is 0
    (``d/dx x ** 0 = 0``); so both orders of ``d2/dxdy`` give ``0 ** (y - 1)``
    there (inf at ``y = 0``). These are conventions, not limits:
    ``x ** y * log(x)`` tends to -inf as ``x -> 0+`` when ``y <= 0``.

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
    vjp=lambda g, out, x: (g * step(x),),
    jvp=lambda dxs, out, x: dxs[0] * step(x),
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
    return g * wx, g * (1.0 - wx)


def _max_jvp(dxs: tuple[Any, ...], wx: Any) -> Any:
    dx, dy = dxs
    a = None if dx is None else dx * wx
    b = None if dy is None else dy * (1.0 - wx)
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
    terms = _scalars("sum", "xs", xs)
    if not terms:
        return 0.0
    return bind(sum_p, *terms)


_SCALAR_TYPES = frozenset({float, int, Expr})


def _scalars(name: str, what: str, xs: Any) -> tuple[Any, ...]:
    """``tuple(xs)``, checked to hold numbers or nodes (in one C pass)."""
    t = type(xs)
    terms: tuple[Any, ...]
    if t is tuple:
        terms = xs
    elif t is list:
        terms = tuple(xs)
    else:
        try:
            if isinstance(xs, (str, bytes)):
                raise TypeError
            terms = tuple(xs)
        except TypeError:
            raise TypeError(
                f"{name}: {what} must be an iterable of numbers (a list or tuple), got "
                f"{errors.describe(xs)}; for one number x, pass [x]"
            ) from None
    if not _SCALAR_TYPES.issuperset(map(type, terms)):
        for k, t in enumerate(terms):
            if _is_array(t):
                raise errors.array_argument(f"{name}: {what}[{k}]", t)
            if type(t) is not Expr and not isinstance(t, numbers.Real):
                raise TypeError(
                    f"{name}: {what}[{k}] is {errors.describe(t)}, not a number; {name} takes "
                    "numbers or traced values (for nested lists, flatten them first: fg.tree_leaves)"
                )
    return terms


def mean(xs: Iterable[Any]) -> Any:
    """Arithmetic mean: ``fg.sum(xs) / len(xs)`` (two nodes).

    >>> mean([1.0, 2.0, 6.0])
    3.0
    """
    terms = _scalars("mean", "xs", xs)
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
    ws, xs = _scalars("dot", "ws", ws), _scalars("dot", "xs", xs)
    if bias is not None and type(bias) is not Expr and not isinstance(bias, numbers.Real):
        raise TypeError(f"dot: bias is {errors.describe(bias)}, not a number; pass a number or None")
    if len(ws) != len(xs):
        raise ValueError(
            f"dot: ws has {len(ws)} entries but xs has {len(xs)}; pass sequences of the same length"
        )
    if bias is None:
        return bind(dot_p, *ws, *xs) if ws else 0.0
    return bind(dot_p, *ws, *xs, bias)


# The rounding family: piecewise constant, so the derivative is 0 (numpy's and
# JAX's convention, also at the jumps). Results are floats with numpy's signs
# (floor(-0.0) and ceil(-0.5) are -0.0); Python's math.floor(node) and
# round(node) call these through Expr's __floor__ and __round__.

_BIG = 4503599627370496.0  # 2 ** 52: every float this large is an integer


def _rounding(name: str, fn: Any) -> Primitive:
    def impl(x: Any) -> float:
        if not -_BIG < x < _BIG:  # an integer already, inf or nan
            return float(x)
        r = float(fn(x))
        return r if r != 0 else math.copysign(0.0, x)

    return Primitive(name, impl=impl, vjp=lambda g, out, x: (None,), jvp=lambda dxs, out, x: None)


floor_p = _rounding("floor", math.floor)
ceil_p = _rounding("ceil", math.ceil)
trunc_p = _rounding("trunc", math.trunc)
round_p = Primitive(
    "round",
    impl=lambda x, ndigits: builtins.round(x, ndigits),  # half to even, a float, the sign kept
    vjp=lambda g, out, x, ndigits: (None, None),
    jvp=lambda dxs, out, x, ndigits: None,
)


def floor(x: Any) -> Any:
    """The largest integer <= x, as a float; its derivative is 0.

    >>> floor(2.5), floor(-2.5)
    (2.0, -3.0)
    """
    return floor_p(x)


def ceil(x: Any) -> Any:
    """The smallest integer >= x, as a float; its derivative is 0.

    >>> ceil(2.5), ceil(-0.5)
    (3.0, -0.0)
    """
    return ceil_p(x)


def trunc(x: Any) -> Any:
    """x rounded towards zero, as a float; its derivative is 0.

    >>> trunc(2.7), trunc(-2.7)
    (2.0, -2.0)
    """
    return trunc_p(x)


def round(x: Any, decimals: int = 0) -> Any:  # noqa: A001 - the maths name, as in numpy
    """x rounded to ``decimals`` digits, halves to even (as Python's ``round``
    and numpy's), as a float; its derivative is 0.

    >>> round(2.5), round(3.5), round(2.675, 2)
    (2.0, 4.0, 2.67)
    """
    if not isinstance(decimals, int) or isinstance(decimals, bool):
        raise TypeError(f"round: decimals must be an int, got {decimals!r}")
    return bind(round_p, x, decimals)


def floor_divide(x: Any, y: Any) -> Any:
    """``x // y``: the floor of x / y (``x // 0`` is inf or nan, as in numpy);
    its derivative is 0.

    >>> floor_divide(7.0, 2.0), floor_divide(-7.0, 2.0)
    (3.0, -4.0)
    """
    return bind(floordiv, x, y)


def mod(x: Any, y: Any) -> Any:
    """``x % y``, with the sign of y (Python's and numpy's; ``x % 0`` is nan).
    Derivatives: 1 in x and ``-floor(x / y)`` in y.

    >>> mod(7.5, 2.0), mod(-7.5, 2.0)
    (1.5, 0.5)
    """
    return bind(mod_p, x, y)


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
    for p in (
        add,
        sub,
        mul,
        div,
        neg,
        pow_,
        abs_,
        exp,
        log,
        tanh,
        relu,
        sigmoid,
        sqrt,
        sin,
        cos,
        maximum,
        minimum,
        sum_p,
        dot_p,
        floordiv,
        floor_p,
        ceil_p,
        trunc_p,
        round_p,
    )
}
PRIMITIVES["mod"] = mod_p
PRIMITIVES["pow_const"] = pow_const
PRIMITIVES["stop_gradient"] = stop_gradient_p
PRIMITIVES.update({"step": step, "sign": sign, "share": share, "pow_log": pow_log})
for _p in PRIMITIVES.values():
    _p.symbolic_zeros = True  # fgrad's own jvp rules skip the work of inputs without a tangent
    _p.trusted = True
