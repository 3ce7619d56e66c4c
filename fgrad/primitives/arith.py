"""The arithmetic primitives, and the operators of ``Expr`` that bind them.

``+ - * / **``, unary ``-`` and ``abs()`` on nodes are primitives declared
here, each once with its rules, as any other op. Their numerics follow
IEEE-754 (``1/0 = inf``, ``0/0 = nan``, ``0 ** -1 = inf``, ``(-8) ** 0.5 =
nan``, overflow gives inf), never a Python exception. ``exp`` and ``log`` live
here too because the rule of ``x ** y`` needs ``log``.

The operators of :class:`Expr` that bind them are installed by
``fgrad.primitives.operators``, which keeps the engine in ``core`` free of any
particular primitive.
"""

from __future__ import annotations

import builtins
import math
import operator
from itertools import repeat
from typing import Any

from fgrad.engine.core import Number, Primitive, bind

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow_const",
    "pow_",
    "abs_",
    "exp",
    "log",
    "step",
    "sign",
    "share",
    "pow_log",
    "sum_p",
    "dot_p",
    "floordiv",
    "mod",
]

_inf = math.inf
_nan = math.nan


def _div_impl(x: Number, y: Number) -> float:
    try:
        return x / y
    except ZeroDivisionError:
        if x != x or x == 0:
            return _nan
        return math.copysign(_inf, x) * math.copysign(1.0, y)


def _is_odd_integer(y: Number) -> bool:
    return math.isfinite(y) and float(y).is_integer() and int(y) % 2 == 1


def _too_big(*xs: Number) -> bool:
    """An int beyond a float among ``xs``: its OverflowError is the user's to
    see (bind turns it into a ValueError), not a result that overflowed."""
    return any(type(v) is int and not -_MAX_FLOAT_INT < v < _MAX_FLOAT_INT for v in xs)


_MAX_FLOAT_INT = 2**1024


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


def _sum_tangents(dxs: tuple[Any, ...]) -> Any:
    present = [d for d in dxs if d is not None]
    if len(present) == 1:
        return present[0]
    return bind(sum_p, *present) if present else None


sum_p = Primitive(
    "sum",
    impl=lambda *xs: _plain_sum(xs),
    vjp=lambda g, out, *xs: (g,) * len(xs),
    jvp=lambda dxs, out, *xs: _sum_tangents(dxs),
)


def _plain_sum(xs: tuple[float, ...]) -> float:
    # Left to right from the first term (not from 0.0, which would turn a
    # lone -0.0 into 0.0); builtins.sum runs the loop in C.
    return builtins.sum(xs[1:], xs[0]) if xs else 0.0


# dot(ws, xs[, bias]): the arguments are laid out as (w1..wn, x1..xn[, b]); an
# odd count means a bias is present. One node per neuron instead of 2n.


def _dot_impl(*a: float) -> float:
    n = len(a) // 2
    # sum over map(mul) runs the loop in C and adds left to right like
    # ``total += w * x`` would.
    return builtins.sum(map(operator.mul, a[:n], a[n : 2 * n]), a[-1] if len(a) % 2 else 0.0)


def _dot_vjp(g: Any, out: Any, *a: Any) -> tuple[Any, ...]:
    # Deferred products (g, x) rather than g * x: the reverse pass fuses all
    # contributions to one weight (one per example) into a single dot.
    n = len(a) // 2
    cts = (*zip(repeat(g, n), a[n : 2 * n]), *zip(repeat(g, n), a[:n]))
    return cts + (g,) if len(a) % 2 else cts


def _dot_jvp(dxs: tuple[Any, ...], out: Any, *a: Any) -> Any:
    n = len(a) // 2
    left: list[Any] = []
    right: list[Any] = []
    for i in range(n):
        if dxs[i] is not None:
            left.append(dxs[i])
            right.append(a[n + i])
        if dxs[n + i] is not None:
            left.append(a[i])
            right.append(dxs[n + i])
    bias = dxs[-1] if len(a) % 2 else None
    if not left:
        return bias
    args = left + right + ([bias] if bias is not None else [])
    return bind(dot_p, *args)


dot_p = Primitive("dot", impl=_dot_impl, vjp=_dot_vjp, jvp=_dot_jvp, products=True)


def _step_impl(x: Number) -> float:
    return 1.0 if x > 0 else 0.0


def _sign_impl(x: Number) -> float:
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return 0.0 if x == 0 else _nan


def _share_impl(x: Number, y: Number) -> float:
    if x > y:
        return 1.0
    return 0.0 if y > x else 0.5


# Piecewise-constant helpers for rules at kinks. Rules multiply by these
# instead of branching on values, so a traced rule holds no data-dependent
# branch (jit would otherwise guard on, and recompile for, every sign
# change), and eager and compiled code do the same arithmetic: the zero
# cotangent below an inactive relu is multiplied, never skipped, so
# ``0 * inf`` is nan in both, as in numpy and JAX. (Skipping it eagerly was
# 25-40% faster on the moons demo, but made eager and jit differ.)
step = Primitive(
    "step",
    impl=_step_impl,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
)
"""``1.0`` where ``x > 0``, else ``0.0``: relu's derivative (relu'(0) = 0)."""
sign = Primitive(
    "sign",
    impl=_sign_impl,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
)
"""``-1.0``, ``0.0`` or ``1.0`` (nan stays nan): abs's derivative (abs'(0) = 0)."""
share = Primitive(
    "share",
    impl=_share_impl,
    vjp=lambda g, out, x, y: (None, None),
    jvp=lambda dxs, out, x, y: None,
)
"""``maximum(x, y)``'s derivative in x: 1, 0, or 0.5 at a tie."""


add = Primitive(
    "add",
    impl=operator.add,
    vjp=lambda g, out, x, y: (g, g),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], dxs[1]),
)
sub = Primitive(
    "sub",
    impl=operator.sub,
    vjp=lambda g, out, x, y: (g, -g),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], None if dxs[1] is None else -dxs[1]),
)
mul = Primitive(
    "mul",
    impl=operator.mul,
    vjp=lambda g, out, x, y: (g * y, g * x),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else dxs[0] * y, None if dxs[1] is None else x * dxs[1]
    ),
)
div: Primitive = Primitive(
    "div",
    impl=_div_impl,
    vjp=lambda g, out, x, y: (div(g, y), div(-(g * out), y)),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else div(dxs[0], y),
        None if dxs[1] is None else div(-(dxs[1] * out), y),
    ),
)
neg = Primitive(
    "neg",
    impl=operator.neg,
    vjp=lambda g, out, x: (-g,),
    jvp=lambda dxs, out, x: -dxs[0],
)
pow_const: Primitive = Primitive(
    # x ** c for a constant c: d/dx only, so no log(x) is computed for nothing.
    "pow",
    impl=_pow_impl,
    vjp=lambda g, out, x, c: (g * _dpow_dx(x, c), None),
    jvp=lambda dxs, out, x, c: dxs[0] * _dpow_dx(x, c),
)
pow_: Primitive = Primitive(
    "pow",
    impl=_pow_impl,
    vjp=lambda g, out, x, y: (g * _dpow_dbase(x, y), g * _dpow_dexponent(x, y)),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else dxs[0] * _dpow_dbase(x, y),
        None if dxs[1] is None else dxs[1] * _dpow_dexponent(x, y),
    ),
)
abs_ = Primitive(
    "abs",
    impl=lambda x: abs(x),
    vjp=lambda g, out, x: (g * sign(x),),
    jvp=lambda dxs, out, x: dxs[0] * sign(x),
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
)
"""``c * x ** y * log(x) ** k`` for a constant int ``k``: 0 where ``c == 0``,
and for ``k >= 1`` also where ``x == 0``."""


def _add_tangents(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _log_impl(x: Number) -> float:
    try:
        return math.log(x)
    except ValueError:
        return -_inf if x == 0 else _nan


log = Primitive(
    "log",
    impl=_log_impl,
    vjp=lambda g, out, x: (div(g, x),),
    jvp=lambda dxs, out, x: div(dxs[0], x),
)


def _exp_impl(x: Number) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        if _too_big(x):
            raise
        return _inf


exp = Primitive(
    "exp",
    impl=_exp_impl,
    vjp=lambda g, out, x: (g * out,),
    jvp=lambda dxs, out, x: dxs[0] * out,
)


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
)
"""``x // y``: ``floor(x / y)`` computed exactly, as Python and numpy do."""
mod: Primitive = Primitive(
    "mod",
    impl=_mod_impl,
    # x % y = x - y * floor(x / y): 1 in x, -floor(x / y) in y (numpy's and JAX's).
    vjp=lambda g, out, x, y: (g, -(g * floordiv(x, y))),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], None if dxs[1] is None else -(dxs[1] * floordiv(x, y))),
)
"""``x % y`` with the sign of ``y``, as Python and numpy (``np.mod``) do; ``x % 0`` is nan."""
