"""The right-hand side of one numpy statement, from a primitive and its arguments' text.

Over a batch (or a matrix of rows, or a vector of scalars) a primitive is
its numpy operator or its ``vectorized`` version; outside one, a call of its
scalar ``impl``. Arithmetic is written inline in both.
"""

from __future__ import annotations

from fgrad.compilers.numpycode.writer import CodeWriter
from fgrad.compilers.pysource import _PLAIN_SUM
from fgrad.engine.core import Primitive
from fgrad.primitives import arith, ops
from fgrad.transforms.batching import bcast_p, data_p, index_p, stack_p

__all__ = ["formula"]

# Sums and dots of at most this many terms are written inline (``a * b + c * d``);
# longer ones call the primitive's implementation, which adds left to right
# from the same start (a dot's bias, or 0.0) as the inline text does.
# CPython's compiler recurses once per ``+`` of an inline chain, so a chain as
# long as the data (an L2 penalty over 4,417 weights) would overflow its
# stack: no generated expression grows with the data.
MAX_INLINE_TERMS = 64


def formula(prim: Primitive, t: list[str], batch: bool, mask: Primitive, code: CodeWriter) -> str:
    """``prim`` applied to the texts ``t``, over arrays if ``batch``; the
    functions it calls are named by ``code``."""
    if prim is arith.add or prim is arith.sub or prim is arith.mul:
        return f"{t[0]} {'+' if prim is arith.add else '-' if prim is arith.sub else '*'} {t[1]}"
    if prim is arith.neg:
        return f"-{t[0]}"
    # (A scalar sum inline only where it is the impl's arithmetic: from
    # Python 3.12 on, builtins.sum of floats is compensated.)
    inline = batch or _PLAIN_SUM
    if prim is arith.sum_p and t and len(t) <= MAX_INLINE_TERMS and inline:
        return " + ".join(t)
    if prim is arith.dot_p and len(t) <= 2 * MAX_INLINE_TERMS + 1 and inline:
        n = len(t) // 2
        terms = [t[-1] if len(t) % 2 else "0.0"]  # from 0.0 without a bias, as the impl starts
        return " + ".join(terms + [f"{t[i]} * {t[n + i]}" for i in range(n)]) or "0.0"
    if not batch:
        if prim is arith.div:
            return f"DIV({t[0]}, {t[1]})"
        return f"{code.func(mask.impl if prim is mask else prim.impl)}({', '.join(t)})"
    if prim is arith.div:
        return f"{t[0]} / {t[1]}"
    if prim is mask:
        return f"{t[0]} * ({t[1]} > 0)"
    if prim is ops.relu:
        return f"MAXIMUM({t[0]}, 0.0)"
    if prim is arith.step:
        return f"({t[0]} > 0) * 1.0"
    if prim is stack_p:
        return f"ARRAY(({''.join(x + ', ' for x in t)}))"
    if prim is data_p:
        return t[0]
    if prim is bcast_p:
        return f"FULL({t[1]}, {t[0]})"
    if prim is index_p:
        return f"float({t[0]}[{t[1]}])"
    fn = prim.vectorized if prim.vectorized is not None else prim.impl
    return f"{code.func(fn)}({', '.join(t)})"
