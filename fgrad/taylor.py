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

import math
import numbers
from collections.abc import Callable
from functools import reduce
from typing import Any

from . import arith, ops
from .core import Expr, Primitive, bind, new_trace
from .graph import backward, forward
from .transforms import lower, trace_inputs

__all__ = ["derivatives", "TAYLOR_RULES"]

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
    **{p: _constant for p in (arith.step, arith.sign, arith.share, arith.nonzero, ops.stop_gradient_p)},
}

TAYLOR_RULES: dict[Primitive, Rule] = {}
"""Rules of your own, by primitive, ``rule(*series) -> series``: for a
primitive you cannot give ``taylor=`` (which comes first). An entry replaces
fgrad's built-in rule of its primitive."""


# The exact series, by nested differentiation in t --------------------------------


def _poly_impl(t: Any, *c: Any) -> Any:
    if t == 0:
        return c[0]  # exactly, also where a higher coefficient is inf or nan
    acc = c[-1]
    for x in reversed(c[:-1]):
        acc = acc * t + x
    return acc


def _poly_dt(t: Any, c: tuple[Any, ...]) -> Any:
    d = [c[1]] + [j * c[j] for j in range(2, len(c))]
    return d[0] if len(d) == 1 else bind(_poly, t, *d)


def _poly_dc(g: Any, t: Any, j: int) -> Any:
    """``g * d/dc_j`` for j >= 1, None at t = 0, where the value is c_0 alone."""
    return None if g is None or type(t) is not Expr and t == 0 else g * arith.pow_const(t, j)


def _poly_jvp(dxs: tuple[Any, ...], t: Any, c: tuple[Any, ...]) -> Any:
    total = _plus(None if dxs[0] is None else dxs[0] * _poly_dt(t, c), dxs[1])
    for j in range(1, len(c)):
        total = _plus(total, _poly_dc(dxs[j + 1], t, j))
    return total


_poly = Primitive(
    "taylor_polynomial",
    impl=_poly_impl,
    vjp=lambda g, out, t, *c: (g * _poly_dt(t, c), g, *(_poly_dc(g, t, j) for j in range(1, len(c)))),
    jvp=lambda dxs, out, t, *c: _poly_jvp(dxs, t, c),
    symbolic_zeros=True,
)
"""``c_0 + c_1 t + ... + c_m t^m``, exactly ``c_0`` at ``t == 0``."""


def _polynomial(s: Series, t: Any) -> Any:
    """Series ``s`` as a function of t: its constant, or a polynomial node."""
    last = max(k for k, c in enumerate(s) if k == 0 or c is not None)
    return s[0] if last == 0 else bind(_poly, t, *(0.0 if c is None else c for c in s[: last + 1]))


def _derivative(fn: Callable[[Any], Any], reverse: bool) -> Callable[[Any], Any]:
    """``t -> fn'(t)``, or None (an exact zero) where ``fn`` does not depend on t."""

    def d(t: Any) -> Any:
        with new_trace("derivatives") as tr:
            (s,), _, _ = trace_inputs(tr, "derivatives", (t,), (0,))
            v = fn(s)
            if type(v) is not Expr or v.trace is not tr:
                return None
            return lower(tr, backward(tr, [(v, 1.0)])[s.seq] if reverse else forward(tr, [(s, 1.0)])[v.seq])

    return d


def _nested(fn: Callable[[Any], Any], t: Any, n: int, reverse: bool) -> Series:
    """``[fn'(t), ..., fn^(n)(t)]``, each by its own k nested differentiations,
    as nested grad computes it (a rule can give another value for a lower
    order when outer levels trace its weights)."""
    out: Series = []
    for k in range(1, n + 1):
        g = fn
        for _ in range(k):
            g = _derivative(g, reverse)
        out.append(g(t))
    return out


def _exact(prim: Primitive, args: list[Series], out: Any) -> Series:
    """The series of ``prim(a_1(t), ..., a_m(t))`` by prim's own derivative rules."""
    if prim.vjp is None and prim.jvp is None:
        raise TypeError(f"derivatives: primitive {prim.name!r} has no Taylor rule, and no vjp or jvp "
                        "rule to derive one from: give it taylor=..., or a vjp or jvp rule")
    ds = _nested(lambda t: bind(prim, *(_polynomial(s, t) for s in args)), 0.0, len(args[0]) - 1,
                 prim.vjp is not None)
    return [out] + [d if d is None or k == 1 else d / _FACTORIAL[k] for k, d in enumerate(ds, 1)]


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
        with new_trace("derivatives") as tr:
            (node,), _, _ = trace_inputs(tr, "derivatives", (x,), (0,))
            out = f(node)
            if not _is_number(out):
                raise TypeError(f"derivatives: f must return one scalar, got a {type(out).__name__}")
            if type(out) is Expr and out.trace is tr:
                return _taylor(tr, node, out, order)
            value = lower(tr, out)  # f does not depend on x
            return [value if type(value) is Expr else float(value)] + [0.0] * order

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
            values[nd.seq] = bind(prim, *(values[a.seq] if type(a) is Expr and a.trace is tr else a
                                          for a in nd.args))
        return values[out.seq]

    return replay
