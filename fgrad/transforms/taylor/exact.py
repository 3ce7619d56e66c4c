"""The exact series of a primitive at any point, by nested differentiation.

The series of ``prim(a_1(t), ..., a_m(t))`` follows from the primitive's own
vjp (or jvp) rule, differentiated in t at 0 as often as the order asks. Each
input enters as a polynomial primitive whose j-th derivative at 0 is exactly
``j! c_j``, so no infinite coefficient is ever multiplied by zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fgrad.engine.core import Expr, Primitive, bind
from fgrad.engine.trace import Trace, traced
from fgrad.primitives import arith
from fgrad.transforms.edges import lower, trace_inputs
from fgrad.transforms.graph import backward, forward
from fgrad.transforms.taylor.series import _FACTORIAL, Series, _plus

__all__: list[str] = []


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
    doc="""``taylor_polynomial(t, c_0, ..., c_m)``: ``c_0 + c_1 t + ... + c_m t^m``,
exactly ``c_0`` at ``t == 0``: Taylor mode's exact fallback. Derivatives:
the polynomial's, in t and in each coefficient.""",
)
_poly.trusted = True


def _polynomial(s: Series, t: Any) -> Any:
    """Series ``s`` as a function of t: its constant, or a polynomial node."""
    last = max(k for k, c in enumerate(s) if k == 0 or c is not None)
    return s[0] if last == 0 else bind(_poly, t, *(0.0 if c is None else c for c in s[: last + 1]))


def _derivative(fn: Callable[[Any], Any], reverse: bool) -> Callable[[Any], Any]:
    """``t -> fn'(t)``, or None (an exact zero) where ``fn`` does not depend on t."""

    def d(t: Any) -> Any:
        def body(tr: Trace) -> Any:
            (s,), _, _ = trace_inputs(tr, "derivatives", (t,), (0,))
            v = fn(s)
            if type(v) is not Expr or v.trace is not tr:
                return None
            return lower(tr, backward(tr, [(v, 1.0)])[s.seq] if reverse else forward(tr, [(s, 1.0)])[v.seq])

        return traced("derivatives", body)

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
        raise TypeError(
            f"derivatives: primitive {prim.name!r} has no Taylor rule, and no vjp or jvp "
            "rule to derive one from: give it taylor=..., or a vjp or jvp rule"
        )
    ds = _nested(
        lambda t: bind(prim, *(_polynomial(s, t) for s in args)), 0.0, len(args[0]) - 1, prim.vjp is not None
    )
    return [out] + [d if d is None or k == 1 else d / _FACTORIAL[k] for k, d in enumerate(ds, 1)]
