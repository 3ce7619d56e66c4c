"""Every primitive of fgrad by name, and the public ops in one namespace.

:data:`PRIMITIVES` maps each of fgrad's own primitives to its name (the
compilers and the numpy backend use it to tell them from a user's). The ops
are declared, each once with all of its rules and its doc, in the modules of
their families:

- :mod:`fgrad.primitives.basic`: add, sub, mul, div, neg, stop_gradient;
- :mod:`fgrad.primitives.elementary`: exp, log, sin, cos, tanh, sqrt, sigmoid;
- :mod:`fgrad.primitives.powers`: power (``x ** c``, ``x ** y``) and pow_log;
- :mod:`fgrad.primitives.piecewise`: relu, abs, maximum, minimum, and step,
  sign, share (their derivatives);
- :mod:`fgrad.primitives.reductions`: sum, dot, mean;
- :mod:`fgrad.primitives.rounding`: floor, ceil, trunc, round, floor_divide, mod.

Every op works on plain floats (and returns a float) as well as on nodes.
Numerics follow IEEE-754 as numpy and JAX do: a domain error gives nan and
overflow gives inf, never a Python exception. At kinks:
``relu'(0) = 0``, ``abs'(0) = 0``, ``maximum``/``minimum`` split a tie
0.5/0.5, and ``sqrt'(0) = inf``.
"""

from __future__ import annotations

from fgrad.engine.core import Primitive
from fgrad.primitives.basic import add, div, mul, neg, stop_gradient, stop_gradient_p, sub
from fgrad.primitives.elementary import cos, exp, log, sigmoid, sin, sqrt, tanh
from fgrad.primitives.piecewise import abs_, maximum, minimum, relu, share, sign, step
from fgrad.primitives.powers import pow_, pow_const, pow_log, power
from fgrad.primitives.reductions import dot, dot_p, mean, sum, sum_p
from fgrad.primitives.rounding import (
    ceil,
    ceil_p,
    floor,
    floor_divide,
    floor_p,
    floordiv,
    mod,
    mod_p,
    round,
    round_p,
    trunc,
    trunc_p,
)

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
    "floor_p",
    "ceil_p",
    "trunc_p",
    "round_p",
    "stop_gradient_p",
    "PRIMITIVES",
]

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
