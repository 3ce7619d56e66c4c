"""The rounding family: floor, ceil, trunc, round, ``//`` and ``%``.

floor, ceil, trunc, round and ``//`` are piecewise constant, so their
derivative is 0 (numpy's and JAX's convention, also at the jumps). Results
are floats with numpy's signs (``floor(-0.0)`` and ``ceil(-0.5)`` are -0.0);
Python's ``math.floor(node)`` and ``round(node)`` call these through Expr's
``__floor__`` and ``__round__``. ``x % y`` is ``x - y * floor(x / y)``, with
derivatives 1 in x and ``-floor(x / y)`` in y.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

from fgrad.engine.core import Number, Primitive, bind
from fgrad.primitives.basic import _add_tangents, _div_impl, _nan, doctests, own

__all__ = [
    "floor",
    "ceil",
    "trunc",
    "round",
    "floor_divide",
    "mod",
    "floor_p",
    "ceil_p",
    "trunc_p",
    "round_p",
    "floordiv",
    "mod_p",
]


def _floordiv_impl(x: Number, y: Number) -> float:
    try:
        return x // y
    except ZeroDivisionError:
        return _div_impl(x, y)  # as numpy: x / 0 (signed inf, or nan for 0 / 0)


def _mod_impl(x: Number, y: Number) -> float:
    try:
        return x % y
    except ZeroDivisionError:
        return _nan  # as numpy


floordiv: Primitive = Primitive(
    "floordiv",
    impl=_floordiv_impl,
    vjp=lambda g, out, x, y: (None, None),  # piecewise constant: 0 almost everywhere
    jvp=lambda dxs, out, x, y: None,
    doc="""``x // y``: ``floor(x / y)`` computed exactly, as Python and numpy do
(``-7.0 // 2.0`` is -4.0); the primitive of ``//`` on nodes.

Derivative: 0 in x and in y (it is piecewise constant), also at the jumps.
Edges: ``x // 0`` is ``x / 0``, as in numpy: inf with the signs of x and of
the zero, or nan for ``0 // 0``; ``inf // y`` is nan, as in Python.

>>> import fgrad as fg
>>> fg.floor_divide(-7.0, 2.0), fg.floor_divide(1.0, 0.0), fg.floor_divide(0.0, 0.0)
(-4.0, inf, nan)
>>> fg.grad(fg.floor_divide, argnums=(0, 1))(7.0, 2.0)
(0.0, 0.0)
""",
)
mod_p: Primitive = Primitive(
    "mod",
    impl=_mod_impl,
    # x % y = x - y * floor(x / y): 1 in x, -floor(x / y) in y (numpy's and JAX's).
    vjp=lambda g, out, x, y: (g, -(g * floordiv(x, y))),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], None if dxs[1] is None else -(dxs[1] * floordiv(x, y))),
    doc="""``x % y``: the remainder with the sign of y, as Python and numpy
(``np.mod``) give it; the primitive of ``%`` on nodes.

Derivatives: 1 in x and ``-floor(x / y)`` in y (from
``x % y = x - y * floor(x / y)``), the floor taken as ``x // y``: so at
``y = 0`` the derivative in y is ``-(x / 0)``, -inf for a positive x.
Edges: ``x % 0`` is nan, as in numpy; ``inf % y`` is nan.

>>> import fgrad as fg
>>> fg.mod(7.5, 2.0), fg.mod(-7.5, 2.0), fg.mod(1.0, 0.0)
(1.5, 0.5, nan)
>>> fg.grad(fg.mod, argnums=(0, 1))(7.5, 2.0)
(1.0, -3.0)
""",
)

_BIG = 4503599627370496.0  # 2 ** 52: every float this large is an integer


def _rounding(name: str, fn: Any, doc: str) -> Primitive:
    def impl(x: Any) -> float:
        if not -_BIG < x < _BIG:  # an integer already, inf or nan
            return float(x)
        r = float(fn(x))
        return r if r != 0 else math.copysign(0.0, x)

    return Primitive(name, impl=impl, vjp=lambda g, out, x: (None,), jvp=lambda dxs, out, x: None, doc=doc)


_ZERO_DERIVATIVE = """Derivative: 0 (it is piecewise constant), also at the integers where it
jumps. inf and nan pass through."""

floor_p = _rounding(
    "floor",
    math.floor,
    f"""``floor(x)``: the largest integer <= x, as a float; at zero the sign of
x is kept (``floor(-0.0)`` is -0.0).

{_ZERO_DERIVATIVE}

>>> import fgrad as fg
>>> fg.floor(2.5), fg.floor(-2.5), fg.grad(fg.floor)(2.5), fg.grad(fg.floor)(3.0)
(2.0, -3.0, 0.0, 0.0)
""",
)
ceil_p = _rounding(
    "ceil",
    math.ceil,
    f"""``ceil(x)``: the smallest integer >= x, as a float; a zero result has
the sign of x (``ceil(-0.5)`` is -0.0).

{_ZERO_DERIVATIVE}

>>> import fgrad as fg
>>> fg.ceil(2.5), fg.ceil(-0.5), fg.grad(fg.ceil)(2.5)
(3.0, -0.0, 0.0)
""",
)
trunc_p = _rounding(
    "trunc",
    math.trunc,
    f"""``trunc(x)``: x rounded towards zero, as a float; a zero result has the
sign of x (``trunc(-0.5)`` is -0.0).

{_ZERO_DERIVATIVE}

>>> import fgrad as fg
>>> fg.trunc(2.7), fg.trunc(-2.7), fg.grad(fg.trunc)(2.7)
(2.0, -2.0, 0.0)
""",
)
round_p = Primitive(
    "round",
    impl=lambda x, ndigits: float(builtins.round(x, ndigits)),  # half to even, the sign kept
    vjp=lambda g, out, x, ndigits: (None, None),
    jvp=lambda dxs, out, x, ndigits: None,
    doc="""``round(x, ndigits)``: x rounded to ``ndigits`` decimals (a constant
int), halves to even, as Python's ``round`` does it: on the exact binary
value (``round(2.675, 2)`` is 2.67), as a float with the sign kept
(``round(-0.5, 0)`` is -0.0). It is what ``round(node)`` binds.

Derivative: 0 in x (it is piecewise constant), also at the jumps; ndigits
has none. inf and nan pass through.

>>> import fgrad as fg
>>> fg.round(2.5), fg.round(3.5), fg.round(2.675, 2), fg.round(3), fg.grad(fg.round)(2.5)
(2.0, 4.0, 2.67, 3.0, 0.0)
""",
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


own(floordiv, mod_p, floor_p, ceil_p, trunc_p, round_p)

__test__ = doctests(floordiv=floordiv, mod=mod_p, floor=floor_p, ceil=ceil_p, trunc=trunc_p, round=round_p)
