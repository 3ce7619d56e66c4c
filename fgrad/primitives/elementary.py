"""The elementary functions: exp, log, sin, cos, tanh, sqrt and sigmoid.

Each works on plain floats (and returns a float) as well as on nodes. Their
numerics follow IEEE-754 as numpy's do: a domain error gives nan and overflow
gives inf, never a Python exception. Rules that only need the output (exp,
tanh, sqrt, sigmoid) compute the derivative from it.
"""

from __future__ import annotations

import math
from typing import Any

from fgrad.engine.core import Number, Primitive
from fgrad.primitives.basic import _inf, _nan, _too_big, div, doctests, own

__all__ = ["exp", "log", "sin", "cos", "tanh", "sqrt", "sigmoid"]


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
    doc="""``exp(x)``: e to the power x.

Derivative: exp(x) itself, taken from the output.
Edges: overflow gives inf (for x beyond about 709.78), and so does its
derivative; ``exp(-inf) = 0``; nan stays nan. An int too large for a float
is refused with a ValueError, as it could not be computed in floats.

>>> import fgrad as fg
>>> fg.exp(0.0), fg.exp(1000.0), fg.grad(fg.exp)(0.0)
(1.0, inf, 1.0)
""",
)


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
    doc="""``log(x)``: the natural logarithm of x.

Derivative: ``1 / x``, divided with ``fg.div`` at every x: inf at 0.0
(-inf at -0.0), and below 0 the formula's value (-1.0 at -1.0) although
the value there is nan.
Edges: ``log(0) = -inf`` (at -0.0 too), nan below 0, ``log(inf) = inf``;
nan stays nan.

>>> import fgrad as fg
>>> fg.log(1.0), fg.log(0.0), fg.log(-1.0), fg.grad(fg.log)(0.0)
(0.0, -inf, nan, inf)
""",
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
    doc="""``sin(x)``: the sine of x (in radians).

Derivative: ``cos(x)``.
Edges: ``sin(inf)`` and ``sin(-inf)`` are nan (where Python's math raises),
and so are their derivatives; nan stays nan.

>>> import fgrad as fg
>>> fg.sin(0.0), fg.sin(float("inf")), fg.grad(fg.sin)(0.0)
(0.0, nan, 1.0)
""",
)
cos: Primitive = Primitive(
    "cos",
    impl=_trig(math.cos),
    vjp=lambda g, out, x: (-(g * sin(x)),),
    jvp=lambda dxs, out, x: -(dxs[0] * sin(x)),
    doc="""``cos(x)``: the cosine of x (in radians).

Derivative: ``-sin(x)`` (so -0.0 at 0.0).
Edges: ``cos(inf)`` and ``cos(-inf)`` are nan (where Python's math raises),
and so are their derivatives; nan stays nan.

>>> import fgrad as fg
>>> fg.cos(0.0), fg.cos(float("inf")), fg.grad(fg.cos)(0.0)
(1.0, nan, -0.0)
""",
)

tanh = Primitive(
    "tanh",
    impl=math.tanh,
    vjp=lambda g, out, x: (g * (1.0 - out * out),),
    jvp=lambda dxs, out, x: dxs[0] * (1.0 - out * out),
    doc="""``tanh(x)``: the hyperbolic tangent of x, between -1 and 1.

Derivative: ``1 - tanh(x) ** 2``, from the output: so exactly 0.0 where
tanh rounds to 1.0 or -1.0 (``|x|`` beyond about 19.1, and at inf).
Edges: ``tanh(inf) = 1``, ``tanh(-inf) = -1``; nan stays nan, with a nan
derivative.

>>> import fgrad as fg
>>> fg.tanh(0.0), fg.tanh(1000.0), fg.grad(fg.tanh)(0.0), fg.grad(fg.tanh)(1000.0)
(0.0, 1.0, 1.0, 0.0)
""",
)


def _sqrt_impl(x: float) -> float:
    return math.sqrt(x) if x >= 0 else _nan


sqrt = Primitive(
    "sqrt",
    impl=_sqrt_impl,
    vjp=lambda g, out, x: (div(g, 2.0 * out),),
    jvp=lambda dxs, out, x: div(dxs[0], 2.0 * out),
    doc="""``sqrt(x)``: the square root of x.

Derivative: ``1 / (2 * sqrt(x))``, from the output and divided with
``fg.div``: inf at 0.0 (-inf at -0.0), nan below 0, 0.0 at inf.
Edges: nan below 0 (but ``sqrt(-0.0)`` is -0.0, as IEEE-754 says),
``sqrt(inf) = inf``; nan stays nan.

>>> import fgrad as fg
>>> fg.sqrt(4.0), fg.sqrt(-1.0), fg.grad(fg.sqrt)(4.0), fg.grad(fg.sqrt)(0.0)
(2.0, nan, 0.25, inf)
""",
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
    doc="""``sigmoid(x)``: the logistic function ``1 / (1 + exp(-x))``, between 0 and 1.

It is computed in two branches so that exp never overflows: far below 0 it
rounds to 0.0 (``sigmoid(-1000) = 0``), far above to 1.0
(``sigmoid(1000) = 1``), and ``sigmoid(-inf) = 0``, ``sigmoid(inf) = 1``;
nan stays nan.
Derivative: ``s * (1 - s)`` from the output s: 0.25 at 0, and exactly 0.0
where s has rounded to 0 or 1.

>>> import fgrad as fg
>>> fg.sigmoid(0.0), fg.sigmoid(-1000.0), fg.grad(fg.sigmoid)(0.0), fg.grad(fg.sigmoid)(1000.0)
(0.5, 0.0, 0.25, 0.0)
""",
)

own(exp, log, sin, cos, tanh, sqrt, sigmoid)

__test__ = doctests(exp=exp, log=log, sin=sin, cos=cos, tanh=tanh, sqrt=sqrt, sigmoid=sigmoid)
