"""Piecewise functions with kinks: relu, abs, maximum and minimum, and the
piecewise-constant helpers (step, sign, share) that are their derivatives.

At the kinks: ``relu'(0) = 0``, ``abs'(0) = 0``, and ``maximum``/``minimum``
split a tie 0.5/0.5 between their arguments.
"""

from __future__ import annotations

from typing import Any

from fgrad.engine.core import Number, Primitive
from fgrad.primitives.basic import _nan, doctests, own

__all__ = ["step", "sign", "share", "abs_", "relu", "maximum", "minimum"]


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
    doc="""``step(x)``: 1.0 where ``x > 0``, else 0.0 (at 0, -0.0 and nan too):
relu's derivative, which relu's rules multiply by.

Derivative: 0 (it is piecewise constant; the rules give none).

>>> step(2.0), step(0.0), step(float("nan"))
(1.0, 0.0, 0.0)
""",
)
sign = Primitive(
    "sign",
    impl=_sign_impl,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
    doc="""``sign(x)``: -1.0 below 0, 1.0 above, 0.0 at 0.0 and -0.0; nan stays
nan. It is abs's derivative, which abs's rules multiply by.

Derivative: 0 (it is piecewise constant; the rules give none).

>>> sign(-3.0), sign(-0.0), sign(float("nan"))
(-1.0, 0.0, nan)
""",
)
share = Primitive(
    "share",
    impl=_share_impl,
    vjp=lambda g, out, x, y: (None, None),
    jvp=lambda dxs, out, x, y: None,
    doc="""``share(x, y)``: 1.0 where ``x > y``, 0.0 where ``y > x``, else 0.5 (a
tie, or a nan on either side): maximum's derivative in x (minimum's is
``share(y, x)``).

Derivative: 0 in both (it is piecewise constant; the rules give none).

>>> share(2.0, 1.0), share(1.0, 2.0), share(1.0, 1.0)
(1.0, 0.0, 0.5)
""",
)

abs_ = Primitive(
    "abs",
    impl=lambda x: abs(x),
    vjp=lambda g, out, x: (g * sign(x),),
    jvp=lambda dxs, out, x: dxs[0] * sign(x),
    doc="""``abs(x)``: the absolute value of x, the primitive of ``abs()`` on
nodes (``abs(-0.0)`` is 0.0, ``abs(-inf)`` is inf, nan stays nan).

Derivative: ``sign(x)``: -1 below 0, 1 above, and 0 at the kink (at 0.0
and -0.0); nan at nan. The cotangent is multiplied by it, so an inf
cotangent at 0 gives nan.

>>> import fgrad as fg
>>> fg.abs(-2.0), fg.grad(fg.abs)(-2.0), fg.grad(fg.abs)(0.0)
(2.0, -1.0, 0.0)
""",
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
    doc="""``relu(x)``: ``max(x, 0)``: x where ``x > 0``, else 0.0 (``relu(-0.0)`` is
0.0, ``relu(-inf)`` is 0.0); nan stays nan.

Derivative: ``step(x)``: 1 where ``x > 0``, else 0, so ``relu'(0) = 0``,
and 0 at nan too although the value is nan. The cotangent is multiplied
by the step, never skipped, so an inf cotangent below 0 gives nan, eager
and compiled alike.

>>> import fgrad as fg
>>> fg.relu(-1.5), fg.relu(2.0), fg.grad(fg.relu)(0.0), fg.grad(fg.relu)(2.0)
(0.0, 2.0, 0.0, 1.0)
""",
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
    doc="""``maximum(x, y)``: the larger of x and y. A nan on either side gives
nan; at a tie the result is x (so ``maximum(-0.0, 0.0)`` is -0.0).

Derivatives: ``share(x, y)`` in x and ``1 - share(x, y)`` in y: 1 for the
larger and 0 for the other, and 0.5 each at a tie (and where either is
nan); so ``maximum(x, x)`` has derivative 1.

>>> import fgrad as fg
>>> fg.maximum(1.0, 2.0), fg.grad(fg.maximum, argnums=(0, 1))(1.0, 1.0)
(2.0, (0.5, 0.5))
""",
)
minimum = Primitive(
    "minimum",
    impl=_min_impl,
    vjp=lambda g, out, x, y: _max_vjp(g, share(y, x)),
    jvp=lambda dxs, out, x, y: _max_jvp(dxs, share(y, x)),
    doc="""``minimum(x, y)``: the smaller of x and y. A nan on either side gives
nan; at a tie the result is x (so ``minimum(0.0, -0.0)`` is 0.0).

Derivatives: ``share(y, x)`` in x and ``1 - share(y, x)`` in y: 1 for the
smaller and 0 for the other, and 0.5 each at a tie (and where either is
nan); so ``minimum(x, x)`` has derivative 1.

>>> import fgrad as fg
>>> fg.minimum(1.0, 2.0), fg.grad(fg.minimum, argnums=(0, 1))(1.0, 1.0)
(1.0, (0.5, 0.5))
""",
)

own(step, sign, share, abs_, relu, maximum, minimum)

__test__ = doctests(step=step, sign=sign, share=share, abs=abs_, relu=relu, maximum=maximum, minimum=minimum)
