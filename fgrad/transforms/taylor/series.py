"""Taylor series of the primitives: coefficient arithmetic and the rules.

A series is a list ``[c_0, ..., c_n]``; None is an exact zero, skipped, never
multiplied. Every sum adds one term at a time, left to right, so that jit's
compiled code gives the same bits (``sum()`` of floats is compensated from
Python 3.12). A rule returns None where its point is not regular; the series
is then derived exactly (``fgrad.transforms.taylor.exact``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import reduce
from typing import Any

from fgrad.engine.core import Expr, Primitive
from fgrad.primitives import arith, ops

Series = list[Any]  # coefficients c_0..c_n; None is an exact zero
Rule = Callable[..., Any]

_inf = math.inf
_TINY = 2.2250738585072014e-308  # the smallest normal float
_MAX_ORDER = 170  # 171! is beyond the largest float
_NESTED_MAX_ORDER = 10  # nested differentiation of a whole tape costs exponentially more
_FACTORIAL = [float(math.factorial(k)) for k in range(_MAX_ORDER + 1)]


# Arithmetic on coefficients, None being an exact zero --------------------------


def _plus(x: Any, y: Any) -> Any:
    if x is None:
        return y
    return x if y is None else x + y


def _minus(x: Any, y: Any) -> Any:
    if y is None:
        return x
    return -y if x is None else x - y


def _times(x: Any, y: Any) -> Any:
    return None if x is None or y is None else x * y


def _conv(a: Series, b: Series, k: int, lo: int, hi: int, w: list[Any] | None = None) -> Any:
    """``sum_{j=lo..hi} (w_j a_j) b_{k-j}`` one term at a time, left to right (as jit's
    compiled additions), skipping exact zeros (None, zero weights); None if none is left."""
    acc = None
    for j in range(lo, hi + 1):
        x, y = a[j], b[k - j]
        if x is not None and y is not None:
            if w is not None:
                if w[j] == 0:
                    continue
                x = w[j] * x
            t = x * y
            acc = t if acc is None else acc + t
    return acc


def _mul(a: Series, b: Series) -> Series:
    return [_conv(a, b, k, 0, k) for k in range(len(a))]


def _square(y: Series, m: int) -> Any:
    return _conv(y, y, m, 0, m)


def _constant(x: Any, *args: Series) -> Series:
    return [x] + [None] * (len(args[0]) - 1)


def _finite(*series: Series) -> bool:
    # Comparisons, not math.isfinite: under jit they are guards, float() is refused.
    return all(-_inf < c < _inf for s in series for c in s if c is not None)


def _normal(y: Any) -> bool:
    # A power's series grows from its value: wrong where that alone over- or underflowed.
    return bool(_TINY <= y < _inf or -_inf < y <= -_TINY)


def _flow(a: Series, first: Any, u_of: Callable[[Series, int], Any]) -> Series:
    """Solve ``y' = u(y) a'`` for y's series: ``y_k = sum_j (j/k) a_j u_{k-j}``,
    ``u_of(y, m)`` giving u's m-th coefficient from y's first m+1 ones."""
    y: Series = [first]
    u: Series = []
    for k in range(1, len(a)):
        u.append(u_of(y, k - 1))
        y.append(_conv(a, u, k, 1, k, [j / k for j in range(k + 1)]))
    return y


# The recurrences that divide by a_0 multiply the ratios a_j / a_0 into the
# output's own coefficients, so that every product is of the size of the
# coefficient it makes: ``a_j * y_i / a_0`` overflows at x = 1e300, and
# ``y_0 * (a_1 / a_0) ** k`` near 0, where the coefficients do not.


def _ratios(a: Series, a0: Any) -> Series:
    return [1.0] + [None if c is None else arith.div(c, a0) for c in a[1:]]


def _in_range(s: Series) -> Series | None:
    # From finite inputs, an inf (or nan) coefficient is a product out of range (log's
    # a_0 ** -k near 0): the exact series then.
    return s if _finite(s[1:]) else None


def _log_series(out: Any, a: Series) -> Series:
    r = _ratios(a, a[0])
    y: Series = [out]
    for k in range(1, len(a)):
        y.append(_minus(r[k], _conv(y, r, k, 1, k - 1, [j / k for j in range(k)])))
    return y


def _sin_cos(a: Series, s0: Any, c0: Any) -> tuple[Series, Series]:
    s: Series = [s0]
    c: Series = [c0]
    for k in range(1, len(a)):
        w = [None] + [_times(j / k, a[j]) for j in range(1, k + 1)]
        s.append(_conv(w, c, k, 1, k))
        c.append(_minus(None, _conv(w, s, k, 1, k)))
    return s, c


def _div(out: Any, a: Series, b: Series) -> Series | None:
    if not (b[0] != 0 and _finite(a, b)):
        return None
    ra, rb = _ratios(a, b[0]), _ratios(b, b[0])
    q: Series = [out]
    for k in range(1, len(a)):
        q.append(_minus(ra[k], _conv(rb, q, k, 1, k)))
    return _in_range(q)


def _power_series(out: Any, a: Series, p: Any) -> Series:
    """``y = a ** p``: ``k y_k = sum_j (p j - (k - j)) (a_j / a_0) y_{k-j}``."""
    ra = _ratios(a, a[0])
    y: Series = [out]
    for k in range(1, len(a)):
        acc = _conv(ra, y, k, 1, k, [p * j - (k - j) for j in range(k + 1)])
        y.append(None if acc is None else acc / k)
    return y


def _pow_const(out: Any, a: Series, c: Series) -> Series | None:
    p = c[0]
    if any(x is not None for x in c[1:]) or type(p) is Expr:
        return None  # bound by hand with a varying exponent
    whole = isinstance(p, numbers.Integral) or (isinstance(p, float) and p.is_integer())
    if whole and 0 <= p <= 64:  # repeated products: exact, no division by a_0
        y = _constant(1.0, a)
        for _ in range(int(p)):
            y = _mul(y, a)
        return [out] + y[1:]
    if not (-_inf < p < _inf and (a[0] > 0 or whole and a[0] != 0) and _normal(out) and _finite(a)):
        return None
    return _in_range(_power_series(out, a, p))


def _pow(out: Any, a: Series, b: Series) -> Series | None:
    """``a ** b = a ** b_0 * exp((b - b_0) log a)``, for a_0 > 0: not ``exp(b log a)``,
    whose large log coefficients cancel (near a_0 = 0) where these multiply."""
    if not (a[0] > 0 and _normal(out) and _finite(a, b)):
        return None
    d = _mul([None] + b[1:], _log_series(ops.log(a[0]), a))
    return _in_range([out] + _mul(_power_series(out, a, b[0]), _flow(d, 1.0, lambda y, m: y[m]))[1:])


def _abs(out: Any, a: Series) -> Series:
    w = arith.sign(a[0])
    if w == 0:  # abs'(0) = 0: nothing flows, as the reverse pass skips it
        return _constant(out, a)
    return [out] + [_times(x, w) for x in a[1:]]


def _select(out: Any, a: Series, b: Series, wa: Any) -> Series:
    """``wa * a + (1 - wa) * b`` for a weight 1, 0 or 0.5 (a tie)."""
    if wa == 1.0:
        return [out] + a[1:]
    if wa == 0.0:
        return [out] + b[1:]
    return [out] + [_plus(_times(x, 0.5), _times(y, 0.5)) for x, y in zip(a[1:], b[1:])]


def _dot(out: Any, *args: Series) -> Series:
    n = len(args) // 2
    total = list(args[-1]) if len(args) % 2 else [None] * len(args[0])
    for i in range(n):
        total = [_plus(t, p) for t, p in zip(total, _mul(args[i], args[n + i]))]
    return [out] + total[1:]


# Built-in rules: ``rule(out, *series)``, ``out`` being the node's value; None
# means "not regular here": the series is then derived exactly.
_BUILTIN: dict[Primitive, Rule] = {
    arith.add: lambda out, a, b: [out] + [_plus(x, y) for x, y in zip(a[1:], b[1:])],
    arith.sub: lambda out, a, b: [out] + [_minus(x, y) for x, y in zip(a[1:], b[1:])],
    arith.mul: lambda out, a, b: [out] + _mul(a, b)[1:],
    arith.div: _div,
    arith.neg: lambda out, a: [out] + [None if x is None else -x for x in a[1:]],
    arith.pow_const: _pow_const,
    arith.pow_: _pow,
    arith.abs_: _abs,
    arith.exp: lambda out, a: _flow(a, out, lambda y, m: y[m]),
    arith.log: lambda out, a: _in_range(_log_series(out, a)) if a[0] != 0 and _finite(a) else None,
    # tanh' = 1 - tanh^2, sigmoid' = sigmoid - sigmoid^2
    ops.tanh: lambda out, a: _flow(a, out, lambda y, m: _minus(None if m else 1.0, _square(y, m))),
    ops.sigmoid: lambda out, a: _flow(a, out, lambda y, m: _minus(y[m], _square(y, m))),
    ops.sqrt: lambda out, a: _pow_const(out, a, _constant(0.5, a)),
    ops.sin: lambda out, a: _sin_cos(a, out, ops.cos(a[0]))[0],
    ops.cos: lambda out, a: _sin_cos(a, ops.sin(a[0]), out)[1],
    ops.relu: lambda out, a: [out] + a[1:] if a[0] > 0 else _constant(out, a),
    ops.maximum: lambda out, a, b: _select(out, a, b, arith.share(a[0], b[0])),
    ops.minimum: lambda out, a, b: _select(out, a, b, arith.share(b[0], a[0])),
    arith.sum_p: lambda out, *xs: [out] + [reduce(_plus, col) for col in zip(*(s[1:] for s in xs))],
    arith.dot_p: _dot,
    arith.mod: lambda out, a, b: (
        [out] + [_minus(x, _times(arith.floordiv(a[0], b[0]), y)) for x, y in zip(a[1:], b[1:])]
    ),
    **{
        p: _constant
        for p in (
            arith.step,
            arith.sign,
            arith.share,
            ops.stop_gradient_p,
            arith.floordiv,
            ops.floor_p,
            ops.ceil_p,
            ops.trunc_p,
            ops.round_p,
        )
    },
}

TAYLOR_RULES: dict[Primitive, Rule] = {}
"""Rules of your own, by primitive, ``rule(*series) -> series``: for a
primitive you cannot give ``taylor=`` (which comes first). An entry replaces
fgrad's built-in rule of its primitive."""
