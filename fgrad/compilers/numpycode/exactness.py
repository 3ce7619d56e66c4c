"""Which values of numpy code may differ from the traced ones, and the guards on them.

numpy code computes some values in its own order (a layer's dots as one
matrix product, weight gradients as ``A @ B.T``, sums over the batch, and
from Python 3.12 a vector of scalar sums without ``builtins.sum``'s
compensation) or with numpy's functions (a vector of scalar ``exp``\\ s),
so they agree with the trace's values to rounding, not bit for bit. A guard
(a Python comparison the trace recorded) on such a value, or on anything
computed from one, would compare numpy's rounding: next to the comparison's
threshold the compiled path could refuse the arguments it was traced with,
or pass another branch's. :func:`inexact_guard` finds such a guard, and jit
then compiles the program with vmap's loop (exact) instead.
"""

from __future__ import annotations

from typing import Any

from fgrad.compilers.numpycode.rows import FEW_TERMS
from fgrad.compilers.pysource import _PLAIN_SUM, MASK
from fgrad.primitives import arith, ops
from fgrad.transforms.batching import batch_sum_p, vdot_p

__all__ = ["InexactGuard", "inexact_guard"]


class InexactGuard(Exception):
    """A batched trace has a guard on a value numpy code computes otherwise:
    jit traces the program again with vmap's loop."""


# Scalar statements numpy code computes with the scalar arithmetic's bits,
# grouped or not.
_EXACT_SCALAR = frozenset({arith.add, arith.sub, arith.mul, arith.div, arith.neg, ops.relu, arith.step, MASK})


def _regrouped(var: str, prim: Any, args: tuple[Any, ...], batched: set[str]) -> bool:
    if prim is vdot_p or prim is batch_sum_p:
        return True
    if var in batched:
        return prim is arith.dot_p  # (a layer's dots: one matrix product)
    if prim is arith.sum_p:
        return not _PLAIN_SUM and 3 <= len(args) < FEW_TERMS
    if prim is arith.dot_p:
        return not _PLAIN_SUM and 2 <= len(args) // 2 < FEW_TERMS
    return prim not in _EXACT_SCALAR and prim.vectorized is not None


def inexact_guard(program: list[tuple[Any, ...]], batched: set[str]) -> tuple[Any, ...] | None:
    """The first guard of ``program`` on a value numpy code may compute
    otherwise than the trace did (see the module), or None."""
    inexact: set[str] = set()
    for ins in program:
        if ins[0] == "op":
            _, var, prim, args = ins
            if _regrouped(var, prim, args, batched) or any(a[0] == "var" and a[1] in inexact for a in args):
                inexact.add(var)
        elif any(r[0] == "var" and r[1] in inexact for r in ins[2:4]):
            return ins
    return None
