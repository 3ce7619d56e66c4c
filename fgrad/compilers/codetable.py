"""Table-driven programs: jit's paths too large to compile as source.

Above ``max_compiled_ops`` operations, CPython's compiler costs more than the
compiled code would save, so a path runs as a list of (function, output
register, input registers) by one loop instead (``fgrad.compilers.codegen`` decides).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["GuardFailed"]

Ref = tuple[str, Any]


class GuardFailed(Exception):
    """A guard of a compiled path did not hold for these arguments.

    Raised as the class, a new instance each time: re-raising one shared
    instance would grow its traceback with every failure (a leak)."""


_COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _table(
    program: list[tuple[Any, ...]], returns: list[Ref], n_inputs: int
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The same program as a list of (function, output register, input
    registers), run by one loop: no compile step, ~3x slower per op."""
    slots: dict[str, int] = {f"x{k}": k for k in range(n_inputs)}
    scratch = slots[" guard"] = n_inputs  # where guards write their (None) result
    consts: list[Any] = []

    def slot(r: Ref) -> int:
        if r[0] == "var":
            return slots[r[1]]
        consts.append(r[1])
        return -len(consts)  # constants sit at the end of the registers

    table: list[tuple[Any, int, tuple[int, ...]]] = []
    for ins in program:
        if ins[0] == "guard":
            _, op, a, b, result = ins
            table.append((_guard(_COMPARE[op], result), scratch, (slot(a), slot(b))))
            continue
        _, var, prim, args = ins
        ins_slots = tuple(slot(a) for a in args)
        slots[var] = len(slots)
        table.append((prim.impl, slots[var], ins_slots))
    out_slots = tuple(slot(r) for r in returns)
    size = len(slots)
    tail = consts[::-1]

    def run(leaves: Sequence[Any]) -> tuple[Any, ...]:
        r: list[Any] = [*leaves, *([None] * (size - n_inputs)), *tail]
        for fn, o, ins in table:
            r[o] = fn(*[r[i] for i in ins])
        return tuple(r[i] for i in out_slots)

    return run


def _guard(check: Callable[[Any, Any], bool], expected: bool) -> Callable[[Any, Any], Any]:
    """A guard by truth value, as the compiled source's ``if not (a > b)``:
    a comparison with a numpy scalar gives a ``numpy.bool_``, never ``True``."""
    if expected:

        def holds(a: Any, b: Any) -> Any:
            if not check(a, b):
                raise GuardFailed
            return None

        return holds

    def fails(a: Any, b: Any) -> Any:
        if check(a, b):
            raise GuardFailed
        return None

    return fails
