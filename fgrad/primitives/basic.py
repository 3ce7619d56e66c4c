"""The basic primitives: ``+ - * /``, unary ``-`` and ``stop_gradient``.

Their numerics follow IEEE-754 (``1/0 = inf``, ``0/0 = nan``), never a Python
exception. The helpers at the top are shared by every family of primitives:
IEEE division, the refusal of ints too large for a float, the sum of tangents
that may be absent (None), the marking of fgrad's own primitives, and the
``__test__`` entry that lets doctest run a primitive's examples.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from fgrad.engine.core import Number, Primitive, bind

__all__ = ["add", "sub", "mul", "div", "neg", "stop_gradient", "stop_gradient_p", "own", "doctests"]

_inf = math.inf
_nan = math.nan


def _div_impl(x: Number, y: Number) -> float:
    try:
        return x / y
    except ZeroDivisionError:
        if x != x or x == 0:
            return _nan
        return math.copysign(_inf, x) * math.copysign(1.0, y)


def _too_big(*xs: Number) -> bool:
    """An int beyond a float among ``xs``: its OverflowError is the user's to
    see (bind turns it into a ValueError), not a result that overflowed."""
    return any(type(v) is int and not -_MAX_FLOAT_INT < v < _MAX_FLOAT_INT for v in xs)


_MAX_FLOAT_INT = 2**1024


def _add_tangents(a: Any, b: Any) -> Any:
    """``a + b`` where None stands for a zero tangent."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def own(*prims: Primitive) -> None:
    """Mark fgrad's own primitives (each family does, where it declares them):
    their jvp rules take None for an input without a tangent, and the reverse
    and forward passes need not check what their rules return."""
    for p in prims:
        p.symbolic_zeros = True
        p.trusted = True


def doctests(**prims: Primitive) -> dict[str, str]:
    """A module's ``__test__``: the examples in ``prims``' docs. doctest looks
    only at functions and classes, and a primitive is neither."""
    tests = {}
    for name, p in prims.items():
        if not p.doc:
            raise ValueError(f"primitive {p.name!r} has no doc")
        tests[name] = p.doc
    return tests


add = Primitive(
    "add",
    impl=operator.add,
    vjp=lambda g, out, x, y: (g, g),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], dxs[1]),
    doc="""``add(x, y)``: ``x + y``, the primitive of ``+`` on nodes.

Derivatives: 1 in x and 1 in y.
IEEE: ``inf + -inf`` is nan; a nan on either side gives nan.

>>> import fgrad as fg
>>> add(1.5, 2.0), fg.grad(lambda x, y: x + y, argnums=(0, 1))(1.5, 2.0)
(3.5, (1.0, 1.0))
""",
)
sub = Primitive(
    "sub",
    impl=operator.sub,
    vjp=lambda g, out, x, y: (g, -g),
    jvp=lambda dxs, out, x, y: _add_tangents(dxs[0], None if dxs[1] is None else -dxs[1]),
    doc="""``sub(x, y)``: ``x - y``, the primitive of binary ``-`` on nodes.

Derivatives: 1 in x and -1 in y.
IEEE: ``inf - inf`` is nan; a nan on either side gives nan.

>>> import fgrad as fg
>>> sub(1.5, 2.0), fg.grad(lambda x, y: x - y, argnums=(0, 1))(1.5, 2.0)
(-0.5, (1.0, -1.0))
""",
)
mul = Primitive(
    "mul",
    impl=operator.mul,
    vjp=lambda g, out, x, y: (g * y, g * x),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else dxs[0] * y, None if dxs[1] is None else x * dxs[1]
    ),
    doc="""``mul(x, y)``: ``x * y``, the primitive of ``*`` on nodes.

Derivatives: y in x and x in y.
IEEE: ``0 * inf`` is nan, in derivatives too (the cotangent is multiplied,
never skipped); overflow gives inf.

>>> import fgrad as fg
>>> mul(1.5, 2.0), fg.grad(lambda x, y: x * y, argnums=(0, 1))(1.5, 2.0)
(3.0, (2.0, 1.5))
""",
)
div: Primitive = Primitive(
    "div",
    impl=_div_impl,
    vjp=lambda g, out, x, y: (div(g, y), div(-(g * out), y)),
    jvp=lambda dxs, out, x, y: _add_tangents(
        None if dxs[0] is None else div(dxs[0], y),
        None if dxs[1] is None else div(-(dxs[1] * out), y),
    ),
    doc="""``div(x, y)``: ``x / y``, the primitive of ``/`` on nodes.

Where Python raises, div gives IEEE results: ``x / 0`` is inf with the sign
of x times the sign of the zero (``1 / -0.0 = -inf``), and ``0 / 0`` and
``nan / 0`` are nan.
Derivatives: ``1 / y`` in x and ``-(x / y) / y`` in y (from the output),
both divided with div: so at ``y = 0`` they are inf or nan too (the
derivative of ``1 / y`` at 0 is -inf).

>>> import fgrad as fg
>>> fg.div(1.0, 0.0), fg.div(0.0, 0.0), fg.grad(fg.div, argnums=(0, 1))(1.0, 2.0)
(inf, nan, (0.5, -0.25))
""",
)
neg = Primitive(
    "neg",
    impl=operator.neg,
    vjp=lambda g, out, x: (-g,),
    jvp=lambda dxs, out, x: -dxs[0],
    doc="""``neg(x)``: ``-x``, the primitive of unary ``-`` on nodes
(``neg(0.0)`` is -0.0; nan stays nan).

Derivative: -1.

>>> import fgrad as fg
>>> neg(2.0), fg.grad(lambda x: -x)(2.0)
(-2.0, -1.0)
""",
)
stop_gradient_p = Primitive(
    "stop_gradient",
    impl=lambda x: x,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
    doc="""``stop_gradient(x)``: x itself, as a constant of every transform.

Derivative: 0, at every order, in reverse and forward mode alike (the rules
give no cotangent and no tangent); inf and nan pass through as values.

>>> import fgrad as fg
>>> fg.stop_gradient(3.0), fg.grad(lambda x: x * fg.stop_gradient(x))(3.0)
(3.0, 3.0)
""",
)


def stop_gradient(x: Any) -> Any:
    """The value of ``x`` with a zero derivative, at every order.

    >>> stop_gradient(3.0)
    3.0
    """
    return bind(stop_gradient_p, x)


own(add, sub, mul, div, neg, stop_gradient_p)

__test__ = doctests(add=add, sub=sub, mul=mul, div=div, neg=neg, stop_gradient=stop_gradient_p)
