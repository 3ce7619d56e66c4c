"""Powers: ``x ** c`` for a constant c, ``x ** y`` for a traced y, and the
``pow_log`` terms that the derivatives of ``x ** y`` are made of.

Values follow IEEE-754 (``0 ** -1 = inf``, ``(-8) ** 0.5 = nan``, overflow
gives inf), never a Python exception. At ``x = 0`` the derivatives follow two
conventions, at every order (see :data:`pow_log`).
"""

from __future__ import annotations

import math
from typing import Any

from fgrad.engine.core import Expr, Number, Primitive, bind
from fgrad.primitives.basic import _add_tangents, _inf, _nan, _too_big, doctests, own
from fgrad.primitives.elementary import _log_impl

__all__ = ["power", "pow_const", "pow_", "pow_log"]


def _is_odd_integer(y: Number) -> bool:
    return math.isfinite(y) and float(y).is_integer() and int(y) % 2 == 1


def _pow_impl(x: Number, y: Number) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        if _too_big(x, y):
            raise
        if x < 0 and _is_odd_integer(y):
            return -_inf
        return _inf
    except ValueError:
        if x == 0:  # 0 ** negative
            return math.copysign(_inf, x) if _is_odd_integer(y) else _inf
        return _nan


def power(x: Any, y: Any) -> Any:
    """``x ** y`` with IEEE results (``0 ** -1 = inf``, ``(-8) ** 0.5 = nan``).

    Derivatives: ``y * x ** (y - 1)`` in x and ``x ** y * log(x)`` in y (a
    constant y, a number rather than a node, has none).

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


pow_const: Primitive = Primitive(
    # x ** c for a constant c: d/dx only, so no log(x) is computed for nothing.
    "pow",
    impl=_pow_impl,
    vjp=lambda g, out, x, c: (g * _dpow_dx(x, c), None),
    jvp=lambda dxs, out, x, c: dxs[0] * _dpow_dx(x, c),
    doc="""``x ** c`` for a constant exponent c (a number, not a node): what
``node ** 2.0`` and ``fg.power(x, 2.0)`` bind.

Derivative in x: ``c * x ** (c - 1)``; ``2 * x`` for c = 2, 1 for c = 1, and
0 for c = 0 (``x ** 0`` is the constant 1, so 0 at x = 0 too). The constant
c has none. Elsewhere at x = 0.0 the formula's IEEE value stands: 0.0
for c > 1, inf for 0 < c < 1, -inf for c < 0.
Values: ``0 ** c`` for c < 0 is inf (-inf for -0.0 and an odd integer c),
a negative base with a non-integer c is nan, overflow gives inf (-inf for a
negative base and an odd integer c), ``0 ** 0 = 1``. An int too large for a
float is refused with a ValueError.

>>> import fgrad as fg
>>> fg.power(0.0, -1.0), fg.power(-8.0, 1 / 3), fg.grad(lambda x: x**3)(2.0)
(inf, nan, 12.0)
>>> fg.grad(lambda x: x**0.5)(0.0), fg.grad(lambda x: x**0)(0.0)
(inf, 0.0)
""",
)
pow_: Primitive = Primitive(
    "pow",
    impl=_pow_impl,
    vjp=lambda g, out, x, y: (g * _dpow_dbase(x, y), g * _dpow_dexponent(x, y)),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else dxs[0] * _dpow_dbase(x, y),
        None if dxs[1] is None else dxs[1] * _dpow_dexponent(x, y),
    ),
    doc="""``x ** y`` for a traced exponent y: what ``node ** node``,
``2.0 ** node`` and ``fg.power(x, y)`` with a node y bind. Its values are
those of ``x ** c`` for a constant c: IEEE results, never an exception.

Derivatives: ``y * x ** (y - 1)`` in x and ``x ** y * log(x)`` in y, both
terms of ``pow_log``, whose conventions hold at every order: a term with a
zero coefficient is 0 (d/dx is 0 where y = 0, also at x = 0), and a term
with a factor log(x) is 0 at x = 0 (d/dy is 0 at x = 0: a convention, not
a limit). A negative base has a nan d/dy (the log of a negative number),
even where the value is defined, as for ``(-8.0) ** 3.0``.

>>> import fgrad as fg
>>> fg.grad(lambda x, y: x**y, argnums=(0, 1))(2.0, 3.0)
(12.0, 5.545177444479562)
>>> fg.grad(lambda x, y: x**y, argnums=(0, 1))(0.0, 2.0)
(0.0, 0.0)
""",
)


def _dpow_dx(x: Any, c: Any) -> Any:
    if c == 0:
        return 0.0  # x ** 0 is constant, also at x = 0 where 0 * 0 ** -1 is nan
    if c == 2:
        return 2.0 * x
    if c == 1:
        return 1.0
    return c * pow_const(x, c - 1)


def _dpow_dbase(x: Any, y: Any) -> Any:
    return bind(pow_log, y, x, y - 1.0, 0)


def _dpow_dexponent(x: Any, y: Any) -> Any:
    return bind(pow_log, 1.0, x, y, 1)


# The derivatives of x ** y are the terms c * x ** y * log(x) ** k, one
# primitive with rules of its own so that every order and every order of
# differentiation meet the same two conventions:
#   - a term whose coefficient c is 0 is 0, even where x ** y is inf (so
#     d/dx x ** y = 0 at y = 0: x ** 0 is the constant 1, as in JAX);
#   - a term with a factor log(x) (k >= 1) is 0 at x = 0 (so d/dy x ** y = 0
#     at x = 0, as in JAX). It is a convention, not a limit (x ** y * log(x)
#     tends to -inf as x -> 0+ when y <= 0), and it holds for every term:
#     both orders of d2/dxdy x ** y give x ** (y - 1) at x = 0 (inf at y = 0).
# Its rules are pow_log again, with k a constant int, never differentiated.


def _pow_log_impl(c: Number, x: Number, y: Number, k: int) -> float:
    if c == 0 or (k and x == 0):
        return 0.0
    out = c * _pow_impl(x, y)
    for _ in range(k):
        out = out * _log_impl(x)
    return out


def _pow_log_partials(c: Any, x: Any, y: Any, k: int) -> tuple[Any, Any, Any]:
    """d/dc, d/dx, d/dy of ``c * x ** y * log(x) ** k``."""
    dx = bind(pow_log, c * y, x, y - 1.0, k)
    if k:
        dx = dx + bind(pow_log, c * k, x, y - 1.0, k - 1)
    return bind(pow_log, 1.0, x, y, k), dx, bind(pow_log, c, x, y, k + 1)


def _pow_log_jvp(dxs: tuple[Any, ...], c: Any, x: Any, y: Any, k: int) -> Any:
    total = None
    for d, partial in zip(dxs, _pow_log_partials(c, x, y, k)):
        if d is not None:
            total = _add_tangents(total, d * partial)
    return total


pow_log: Primitive = Primitive(
    "pow_log",
    impl=_pow_log_impl,
    vjp=lambda g, out, c, x, y, k: (*(g * p for p in _pow_log_partials(c, x, y, k)), None),
    jvp=lambda dxs, out, c, x, y, k: _pow_log_jvp(dxs, c, x, y, k),
    symbolic_zeros=True,
    doc="""``pow_log(c, x, y, k)``: ``c * x ** y * log(x) ** k`` for a constant
int ``k >= 0``; the derivatives of ``x ** y`` are sums of such terms.

Conventions: it is 0 where ``c == 0`` (even where ``x ** y`` is inf), and
for ``k >= 1`` also where ``x == 0``. These are conventions, not limits
(``x ** y * log(x)`` tends to -inf as ``x -> 0+`` when ``y <= 0``).
Otherwise the factors take their IEEE values (nan for a negative x and
``k >= 1``).
Derivatives: ``x ** y * log(x) ** k`` in c; ``c * y * x ** (y - 1) *
log(x) ** k + c * k * x ** (y - 1) * log(x) ** (k - 1)`` in x;
``c * x ** y * log(x) ** (k + 1)`` in y; none in k. Each is a pow_log
again, so the conventions hold at every order.

>>> pow_log(2.0, 3.0, 2.0, 0), pow_log(0.0, 0.0, -1.0, 0), pow_log(1.0, 0.0, 2.0, 1)
(18.0, 0.0, 0.0)
""",
)

own(pow_const, pow_, pow_log)

__test__ = doctests(pow_const=pow_const, pow_=pow_, pow_log=pow_log)
