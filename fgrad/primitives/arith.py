"""The primitives of Python's operators and the helper primitives of rules,
gathered in one namespace: the compilers' tables, the numpy backend and the
Taylor rules name them ``arith.add``, ``arith.step`` ...

Each is declared, with its rules and its doc, in its family's module:

- :mod:`fgrad.primitives.basic`: add, sub, mul, div, neg;
- :mod:`fgrad.primitives.elementary`: exp, log;
- :mod:`fgrad.primitives.powers`: pow_const (``x ** c``), pow_ (``x ** y``), pow_log;
- :mod:`fgrad.primitives.piecewise`: abs_ and the kinks' helpers step, sign, share;
- :mod:`fgrad.primitives.reductions`: sum_p, dot_p;
- :mod:`fgrad.primitives.rounding`: floordiv (``//``), mod (``%``).

``fgrad.primitives.operators`` installs the operators of ``Expr`` that bind them.
"""

from __future__ import annotations

from fgrad.primitives.basic import _div_impl as _div_impl
from fgrad.primitives.basic import add, div, mul, neg, sub
from fgrad.primitives.elementary import exp, log
from fgrad.primitives.piecewise import abs_, share, sign, step
from fgrad.primitives.powers import pow_, pow_const, pow_log
from fgrad.primitives.reductions import dot_p, sum_p
from fgrad.primitives.rounding import floordiv
from fgrad.primitives.rounding import mod_p as mod

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
