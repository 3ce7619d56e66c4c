"""Which values of numpy code may differ from the traced ones, and the guards on them.

numpy code computes some values in its own order or with numpy's functions,
so they agree with the trace's values to rounding, not bit for bit:

- a layer's dots as one matrix product (``LayerDots``);
- weight gradients as one ``A @ B.T``, and sums over the batch of several
  rows as one row-sum (``BatchSums``);
- isomorphic statements run as one over a matrix or vector (``rows``) whose
  primitive is not exact arithmetic (numpy's ``exp`` of a vector may differ
  in the last bit from ``math.exp``), and from Python 3.12 on, scalar sums
  and dots, which the impl adds with ``builtins.sum``'s compensation;
- a chunked vmap's outputs (numpy code run chunk by chunk).

The groups mark such results in ``Registers.inexact``. A guard (a Python
comparison the trace recorded) on one of them, or on anything computed from
one, would compare numpy's rounding: next to the comparison's threshold the
compiled path could refuse the arguments it was traced with, or pass another
branch's. :func:`inexact_guard` finds such a guard, and jit then compiles
the program with vmap's loop (exact) instead. Everything else numpy code
computes as the trace did: a lone scalar statement calls its impl, a batched
one the same numpy version the trace ran.
"""

from __future__ import annotations

from typing import Any

from fgrad.compilers.pysource import _PLAIN_SUM, MASK
from fgrad.engine.core import Primitive
from fgrad.primitives import arith, ops
from fgrad.transforms.chunks import map_p, primal_of

__all__ = ["InexactGuard", "exact_in_rows", "inexact_guard"]


class InexactGuard(Exception):
    """A batched trace has a guard on a value numpy code computes otherwise:
    jit traces the program again with vmap's loop."""


# Primitives whose numpy statement over a matrix or vector gives each
# member's bits as its own statement would.
_EXACT = frozenset({arith.add, arith.sub, arith.mul, arith.div, arith.neg, ops.relu, arith.step, MASK})


# A chunked vmap's values: numpy code over each chunk, which agrees with
# vmap's loop to rounding (``fgrad.transforms.chunks``).
_ROUNDED = frozenset({map_p, primal_of})


def exact_in_rows(prim: Primitive, scalar: bool) -> bool:
    """Whether statements of ``prim`` run as one over rows (or, ``scalar``,
    over a vector of scalars) keep each one's bits."""
    if prim is arith.sum_p or prim is arith.dot_p:
        return _PLAIN_SUM or not scalar  # (arrays add plainly; floats compensated from 3.12)
    return prim in _EXACT


def inexact_guard(program: list[tuple[Any, ...]], inexact: set[str]) -> tuple[Any, ...] | None:
    """The first guard of ``program`` on a value computed from one of
    ``inexact`` (or on one of them), or None."""
    tainted = set(inexact)
    for ins in program:
        if ins[0] == "op":
            if ins[2] in _ROUNDED or any(a[0] == "var" and a[1] in tainted for a in ins[3]):
                tainted.add(ins[1])
        elif any(r[0] == "var" and r[1] in tainted for r in ins[2:4]):
            return ins
    return None
