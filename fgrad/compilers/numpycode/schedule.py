"""When each statement is written: now, in a group, or deferred to its level.

Elementwise statements wait until something else needs them, and are then
emitted level by level (each level's statements only use earlier ones), so
that rows of one matrix meet in one statement (``rows``). A group of dots or
sums (``matrices``) is emitted where its first result is needed, which is
after every member's inputs exist.
"""

from __future__ import annotations

from typing import Any

from fgrad.compilers.numpycode.formulas import formula
from fgrad.compilers.numpycode.matrices import BatchSums, LayerDots
from fgrad.compilers.numpycode.registers import Ref, Registers, list_of
from fgrad.compilers.numpycode.rows import FEW_TERMS, RowStatements
from fgrad.compilers.numpycode.writer import CodeWriter
from fgrad.compilers.pysource import _PLAIN_SUM
from fgrad.engine.core import Primitive
from fgrad.primitives import arith

__all__ = ["Scheduler", "levels"]


class Scheduler:
    """Statements in, numpy source out (into ``code``): groups what it can."""

    def __init__(
        self,
        np: Any,
        batched: set[str],
        guard_error: type[Exception],
        mask: Primitive,
        n_inputs: int,
        float_inputs: bool,
    ) -> None:
        self.code = CodeWriter(np, guard_error)
        self.regs = Registers(self.code, np, batched, n_inputs, float_inputs)
        self.mask = mask
        self.dots = LayerDots(self.regs)
        self.sums = BatchSums(self.regs)
        self.groups = {prim: group for group in (self.dots, self.sums) for prim in group.prims}
        self.rows = RowStatements(self.regs, mask)
        self.pending = self.regs.pending  # members of groups not emitted yet (the registers' dict)
        # Statements that need a pending group's result wait here, so that the
        # group can keep growing (a relu between two dots of one layer).
        self.deferred: list[tuple[Any, ...]] = []
        self.waiting: set[str] = set()
        self.guard_waiting = False

    def emit(self, ins: tuple[Any, ...]) -> None:
        used = ins[3] if ins[0] == "op" else ins[2:4]
        # Nothing moves ahead of a waiting guard: a statement after it may
        # only be valid when it holds (a user's impl can raise on a domain).
        blocked = self.guard_waiting
        if not blocked:
            pending, waiting = self.pending, self.waiting
            for r in used:  # (a loop, not any(): this runs once per statement)
                if r[0] == "var" and (r[1] in pending or r[1] in waiting):
                    blocked = True
                    break
        group = self.groups.get(ins[2]) if ins[0] == "op" else None
        if group is not None and group.takes(ins[1], ins[2], ins[3]):
            if blocked:
                self.flush_all()  # a group member whose inputs are not computed yet
            self.emit_now(ins)
        elif blocked or self.rows.elementwise(ins):
            self.deferred.append(ins)
            self.guard_waiting = self.guard_waiting or ins[0] == "guard"
            if ins[0] == "op":
                self.waiting.add(ins[1])
        else:
            self.emit_now(ins)

    def emit_now(self, ins: tuple[Any, ...]) -> None:
        regs = self.regs
        if ins[0] == "guard":
            _, op, a, b, result = ins
            self.code.put(f"if {'not ' if result else ''}({regs.text(a)} {op} {regs.text(b)}): raise GUARD")
            return
        _, var, prim, args = ins
        group = self.groups.get(prim)
        if group is not None and group.add(var, prim, args):
            return
        if (prim is arith.dot_p or prim is arith.sum_p) and var not in regs.batched:
            reduced = self.reduction(prim, args)
            if reduced is not None:
                self.code.put(f"{var} = {reduced}")
                return
        texts = [regs.text(a) for a in args]
        self.code.put(f"{var} = {formula(prim, texts, var in regs.batched, self.mask, self.code)}")

    def reduction(self, prim: Primitive, args: tuple[Ref, ...]) -> str | None:
        """A long scalar dot or sum whose terms live in vectors (the
        parameters, their gradients: an L2 penalty) as one loop over them, or
        None. It is the impl's arithmetic, left to right from the first term
        (a dot from its bias or 0.0), so its bits are the eager ones: a guard
        on it holds as traced, and an overflow or a cancellation comes out as
        it did eagerly. Before Python 3.12 that is numpy's ``add.accumulate``
        over a vector; from 3.12 on, ``builtins.sum`` of floats is
        compensated, and the code calls it over lists as the impl does."""
        regs = self.regs
        vector = _PLAIN_SUM
        if prim is arith.sum_p:
            terms = list_of(regs, args, vector) if len(args) >= FEW_TERMS else None
            if terms is None:
                return None
            return f"float(ACCUMULATE({terms})[-1])" if vector else f"PLAIN_SUM({terms})"
        n = len(args) // 2
        if n < FEW_TERMS:
            return None
        left, right = list_of(regs, args[:n], vector), list_of(regs, args[n : 2 * n], vector)
        if left is None or right is None:
            return None
        start = regs.text(args[-1]) if len(args) % 2 else "0.0"
        if vector:
            return f"float(ACCUMULATE(CONCAT((({start},), {left} * {right})))[-1])"
        return f"PLAIN_DOT({left}, {right}, {start})"

    def flush_all(self) -> None:
        """Emits every group, then the deferred statements level by level."""
        self.dots.flush()
        self.sums.flush()
        remaining, self.deferred = self.deferred, []
        self.waiting.clear()
        self.guard_waiting = False
        rows = self.rows
        for level in levels(remaining):
            buckets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            for ins in level:
                if rows.elementwise(ins):
                    buckets.setdefault(rows.key(ins), []).append(ins)
                else:
                    self.emit_now(ins)
            for key, members in buckets.items():
                if not rows.emit(key, members):
                    for ins in members:
                        self.emit_now(ins)
        if self.pending:  # a waiting statement joined a group: emit it too
            self.flush_all()


def levels(statements: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """``statements`` level by level: a statement's level is one more than
    the deepest statement of the list it reads, so each level reads only
    earlier ones; and statements after a guard come after it (a barrier)."""
    level: dict[str, int] = {}
    by_level: dict[int, list[tuple[Any, ...]]] = {}
    barrier = -1
    get = level.get
    for ins in statements:
        used = ins[3] if ins[0] == "op" else ins[2:4]
        lv = barrier + 1
        for r in used:
            if r[0] == "var":
                at = get(r[1], -1) + 1
                if at > lv:
                    lv = at
        if ins[0] == "op":
            level[ins[1]] = lv
        else:
            barrier = lv
        by_level.setdefault(lv, []).append(ins)
    return [by_level[lv] for lv in sorted(by_level)]
