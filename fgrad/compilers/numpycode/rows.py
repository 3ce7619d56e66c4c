"""Elementwise statements run as one over the rows of a matrix or the entries of a vector.

Elementwise statements over the rows of one matrix (the relus of a layer,
the masks of their reverse pass) become one statement over the matrix;
likewise, isomorphic scalar statements (each weight's penalty, gradient
and update) become one statement over a vector of them, read back as
floats (``.tolist()``) only where a single one is needed.
"""

from __future__ import annotations

from typing import Any

from fgrad.compilers.numpycode.exactness import exact_in_rows
from fgrad.compilers.numpycode.formulas import formula
from fgrad.compilers.numpycode.registers import Registers, key_of
from fgrad.engine.core import Primitive
from fgrad.primitives import arith, ops
from fgrad.transforms.batching import batch_sum_p, bcast_p, data_p, index_p, onehot_p, stack_p, vdot_p
from fgrad.transforms.chunks import item_p, map_p, pad_p, part_p, primal_of

__all__ = ["FEW_TERMS", "RowStatements"]

# Scalar dots and sums of at least this many terms that live in vectors run as
# one numpy reduction each (fewer are written inline: a gather costs more).
FEW_TERMS = 8
_NOT_ELEMENTWISE = frozenset(
    {
        vdot_p,
        batch_sum_p,
        stack_p,
        index_p,
        bcast_p,
        onehot_p,
        data_p,
        map_p,
        part_p,
        item_p,
        pad_p,
        primal_of,
    }
)
# Scalar statements that may run as one numpy statement over a vector.
_SCALAR_OK = frozenset(
    {arith.add, arith.sub, arith.mul, arith.div, arith.neg, arith.sum_p, arith.dot_p, ops.relu, arith.step}
)


class RowStatements:
    """Which statements are elementwise, which of them can run as one (their
    row key), and the one statement they run as."""

    def __init__(self, regs: Registers, mask: Primitive) -> None:
        self.regs = regs
        self.code = regs.code
        self.mask = mask
        self.batched = regs.batched

    def elementwise(self, ins: tuple[Any, ...]) -> bool:
        if ins[0] != "op" or ins[2] in _NOT_ELEMENTWISE:
            return False
        prim = ins[2]
        if ins[1] in self.batched:
            return True
        if (prim is arith.sum_p and len(ins[3]) >= FEW_TERMS) or (
            prim is arith.dot_p and len(ins[3]) // 2 >= FEW_TERMS
        ):
            return False  # a long reduction on its own (the scheduler's ``reduction``)
        return prim in _SCALAR_OK or prim is self.mask or prim.vectorized is not None

    def key(self, ins: tuple[Any, ...]) -> tuple[Any, ...]:
        """Statements with equal keys can run as one over matrix rows: the
        same primitive, and per argument the same matrix (rows), the same
        batch (broadcast), the same int, or a scalar (stacked into a column)."""
        regs = self.regs
        scalar = ins[1] not in self.batched
        key: list[Any] = [ins[2], scalar]
        for r in ins[3]:
            home = regs.homes.get(r[1]) if r[0] == "var" else None
            if home is not None and home[3] == scalar:
                key.append(("m", home[0]))
            elif not scalar and regs.is_b(r):
                key.append(("b", key_of(r)))
            elif r[0] == "const" and type(r[1]) is int:
                # an int may be a parameter (round's digits, an index), which
                # a primitive's numpy version takes as one int, not a column
                key.append(("s", r[1]))
            else:
                key.append(("s",))
        return tuple(key)

    def emit(self, key: tuple[Any, ...], members: list[tuple[Any, ...]]) -> bool:
        """The statements ``members`` of one key as one statement; False
        (nothing written) for a single one."""
        if len(members) < 2:
            return False
        regs = self.regs
        scalar, kinds = key[1], key[2:]
        n = len(members)
        matrices = [p for p, k in enumerate(kinds) if k[0] == "m"]
        perms: dict[int, list[int]] = {}
        if matrices:
            # Members in the row order of the first matrix argument; the
            # others are read in that order: whole, sliced, reversed (the
            # reverse pass visits a layer's neurons backwards) or gathered.
            first = matrices[0]
            members = sorted(members, key=lambda ins: regs.homes[ins[3][first][1]][1])
            for p in matrices:
                perms[p] = [regs.homes[ins[3][p][1]][1] for ins in members]
        texts = []
        for p, k in enumerate(kinds):
            if k[0] == "m":
                texts.append(regs.gather(k[1], perms[p], regs.homes[members[0][3][p][1]][2]))
            elif k[0] == "b":
                texts.append(regs.text(members[0][3][p]))
            else:
                refs = tuple(ins[3][p] for ins in members)
                if len({key_of(r) for r in refs}) == 1:
                    texts.append(regs.text(refs[0]))  # the same scalar for all
                else:  # a vector of scalars; a column beside a batch's rows
                    texts.append(regs.stack(refs) + ("" if scalar else "[:, None]"))
        out = self.code.temp()
        self.code.put(f"{out} = {formula(key[0], texts, True, self.mask, self.code)}")
        homes, virtual = regs.homes, regs.virtual  # (``regs.place``; members are never pending)
        exact = exact_in_rows(key[0], scalar)
        for j, ins in enumerate(members):
            homes[ins[1]] = (out, j, n, scalar)
            virtual.add(ins[1])
            if not exact:
                regs.inexact.add(ins[1])
        return True
