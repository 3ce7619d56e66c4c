"""Registers of vmap's numpy code: which hold a batch, and where each value lives.

A batched register holds one value per example in a 1-D array; a group of
them may live as the rows of one matrix, and a group of scalars as the
entries of one vector (a register's *home*). A register read singly is
written out from its home only then, so groups that feed groups never pay
for their members one by one.
"""

from __future__ import annotations

import struct
from typing import Any

from fgrad.compilers.numpycode.writer import CodeWriter

__all__ = ["INPUTS", "Ref", "Registers", "key_of", "list_of", "return_tuple"]

Ref = tuple[str, Any]

# The vector of all the inputs, when they are all floats: made on first use
# (``compile_batched`` writes it at the top if the code reads it). Each input
# ``x<k>`` lives there as entry k, and singly as ``leaves[k]``.
INPUTS = "XS"


class Registers:
    """The registers of one program, read as source text: singly, stacked
    into a matrix or vector, or as rows gathered from the matrix they live in."""

    def __init__(
        self, code: CodeWriter, np: Any, batched: set[str], n_inputs: int, float_inputs: bool
    ) -> None:
        self.code = code
        self.np = np
        self.batched = batched  # the registers holding a batch
        self.stacks: dict[tuple[Any, ...], str] = {}
        # Registers that are row j of a matrix of k rows (a batch each), or
        # entry j of a vector of k scalars: (name, j, k, scalar). "Virtual"
        # ones are only written out (``v = M[j]``, ``v = L[j]`` with ``L =
        # V.tolist()``) if something reads them singly.
        self.homes: dict[str, tuple[str, int, int, bool]] = {}
        self.virtual: set[str] = set()
        self.lists: dict[str, str] = {}
        # Members of a group not emitted yet (member register -> its group's
        # kind): their values do not exist until the group is flushed.
        self.pending: dict[str, str] = {}
        # Registers a group computes otherwise than the trace did, to rounding
        # (see ``numpycode.exactness``): guards on them need the loop.
        self.inexact: set[str] = set()
        # With float inputs only (no batches among them), the inputs live in
        # the vector INPUTS, so that groups read them by one fancy index.
        self.float_inputs = float_inputs and n_inputs > 0
        self.n_inputs = n_inputs
        if self.float_inputs:
            for k in range(n_inputs):
                self.homes[f"x{k}"] = (INPUTS, k, n_inputs, True)
            self.virtual.update(self.homes)
            self.lists[INPUTS] = "leaves"

    def is_b(self, r: Ref) -> bool:
        return r[1] in self.batched if r[0] == "var" else type(r[1]) is self.np.ndarray

    def text(self, r: Ref) -> str:
        if r[0] == "var":
            if r[1] in self.virtual:
                self.virtual.discard(r[1])
                m, j, _, scalar = self.homes[r[1]]
                if scalar:  # a Python float, as the scalar program computes
                    if m not in self.lists:
                        self.lists[m] = self.code.temp()
                        self.code.put(f"{self.lists[m]} = {m}.tolist()")
                    m = self.lists[m]
                self.code.put(f"{r[1]} = {m}[{j}]")
            return str(r[1])
        return self.code.constant(r[1])

    def place(self, var: str, name: str, j: int, k: int, scalar: bool) -> None:
        """``var`` is computed, as entry ``j`` of the ``k`` of matrix or vector ``name``."""
        self.homes[var] = (name, j, k, scalar)
        self.virtual.add(var)
        self.pending.pop(var, None)

    def input_index(self, refs: Any) -> list[int] | None:
        """The input numbers of refs that are all inputs (``x<k>``), or None
        (also when the inputs are not all floats: then there is no vector of them)."""
        if not self.float_inputs:
            return None
        out = []
        for r in refs:
            if r[0] != "var" or r[1][0] != "x":
                return None
            out.append(int(r[1][1:]))
        return out

    def gather_inputs(self, index: Any) -> str:
        """Inputs by position (a list, or a list of lists for a matrix): one
        fancy index into the vector of all inputs, instead of an array built
        from that many Python floats."""
        return f"{INPUTS}[{self.text(('const', self.np.array(index)))}]"

    def stack(self, refs: tuple[Ref, ...]) -> str:
        """The (len(refs), batch) matrix of batched registers, or the vector
        of scalar ones, made once."""
        homes = [self.homes.get(r[1]) if r[0] == "var" else None for r in refs]
        h0 = homes[0]
        if (
            h0 is not None
            and h0[2] == len(refs)
            and all(h is not None and h[0] == h0[0] and h[1] == j for j, h in enumerate(homes))
        ):
            return h0[0]  # the rows of a matrix, in order: the matrix itself
        key = tuple(map(key_of, refs))
        name = self.stacks.get(key)
        if name is None:
            index = self.input_index(refs)
            name = self.stacks[key] = self.code.temp()
            if index is not None and len(index) > 2:
                self.code.put(f"{name} = {self.gather_inputs(index)}")
            elif len(refs) > 2 and all(r[0] == "const" and type(r[1]) is float for r in refs):
                # constants (adam's b1 and b2 beside its moments): made once, not per call
                self.code.put(f"{name} = {self.text(('const', self.np.array([r[1] for r in refs])))}")
            else:
                self.code.put(f"{name} = ARRAY(({''.join(self.text(r) + ', ' for r in refs)}))")
        return name

    def gather(self, name: str, rows: list[int], size: int) -> str:
        """Rows ``rows`` of matrix (or entries of vector) ``name`` of ``size``."""
        n = len(rows)
        if rows == list(range(rows[0], rows[0] + n)):
            return name if n == size else f"{name}[{rows[0]}:{rows[0] + n}]"
        if n == size and rows == list(range(n - 1, -1, -1)):
            return f"{name}[::-1]"
        return f"{name}[{self.text(('const', self.np.array(rows)))}]"

    def source(self, r: Ref) -> Any:
        """The matrix a register is a row of, or the register itself."""
        home = self.homes.get(r[1]) if r[0] == "var" else None
        return ("m", home[0]) if home is not None else key_of(r)

    def in_row_order(self, refs: Any) -> list[Ref]:
        out: list[Ref] = list(refs)
        if all(r[0] == "var" and r[1] in self.homes for r in out):
            out.sort(key=lambda r: self.homes[r[1]][1])
        return out


def list_of(regs: Registers, refs: tuple[Ref, ...], vector: bool = False) -> str | None:
    """The scalar registers ``refs`` as a list of floats (with ``vector``, a
    numpy vector) if they all live in vectors, else None: a run of inputs in
    order is a slice of ``leaves`` (all of them ``leaves`` itself); others
    are one gather, from one vector or the concatenation of a few, and
    ``tolist``."""
    index = regs.input_index(refs)
    if index is not None and index == list(range(index[0], index[0] + len(index))):
        a, b = index[0], index[0] + len(index)
        if vector:
            return regs.gather(INPUTS, index, regs.n_inputs)
        return "leaves" if (a, b) == (0, regs.n_inputs) else f"leaves[{a}:{b}]"
    homes: list[tuple[str, int, int, bool]] = []
    for r in refs:
        h = regs.homes.get(r[1]) if r[0] == "var" else None
        if h is None or not h[3]:
            return None
        homes.append(h)
    names: dict[str, int] = {}  # vector -> its offset in their concatenation
    at = 0
    for h in homes:
        if h[0] not in names:
            names[h[0]] = at
            at += h[2]
    index = [names[h[0]] + h[1] for h in homes]
    tolist = "" if vector else ".tolist()"
    if len(names) == 1:
        return f"{regs.gather(next(iter(names)), index, at)}{tolist}"
    joined = f"CONCAT(({''.join(v + ', ' for v in names)}))"
    return f"{joined}[{regs.text(('const', regs.np.array(index)))}]{tolist}"


def return_tuple(regs: Registers, refs: list[Ref]) -> str:
    """What the function returns: runs of scalars that live in vectors come
    out of one gather and one ``tolist`` instead of one line each, and when
    they are nearly all the outputs, that list itself, the few others
    inserted (a tuple of 50,000 outputs took 0.4 ms to build)."""
    homes, virtual = regs.homes, regs.virtual
    homed = [r[0] == "var" and r[1] in virtual and homes[r[1]][3] for r in refs]
    if sum(homed) < 8:
        return "(" + "".join(regs.text(r) + ", " for r in refs) + ")"
    sizes = {homes[r[1]][0]: homes[r[1]][2] for r, h in zip(refs, homed) if h}  # (in order met)
    vectors = list(sizes)
    offset, at = {}, 0
    for v in vectors:
        offset[v] = at
        at += sizes[v]
    index = [offset[homes[r[1]][0]] + homes[r[1]][1] for r, h in zip(refs, homed) if h]
    out = regs.code.temp()
    joined = vectors[0] if len(vectors) == 1 else f"CONCAT(({''.join(v + ', ' for v in vectors)}))"
    gathered = (
        joined if index == list(range(at)) else f"{joined}[{regs.text(('const', regs.np.array(index)))}]"
    )
    regs.code.put(f"{out} = {gathered}.tolist()")
    others = [i for i, h in enumerate(homed) if not h]
    if len(others) <= 8:
        for i in others:  # (in increasing order: each lands at its final place)
            regs.code.put(f"{out}.insert({i}, {regs.text(refs[i])})")
        return out
    parts, k, i = [], 0, 0
    while i < len(refs):
        if homed[i]:
            j = i
            while j < len(refs) and homed[j]:
                j += 1
            parts.append(f"*{out}[{k}:{k + j - i}], ")
            k += j - i
            i = j
        else:
            parts.append(regs.text(refs[i]) + ", ")
            i += 1
    return "(" + "".join(parts) + ")"


def key_of(r: Ref) -> Any:
    """A hashable stand-in for a ref: floats by their bits (0.0 and -0.0,
    nans of other payloads differ), ints by value (2 and 2.0 differ), other
    constants (arrays) by identity."""
    if r[0] == "var":
        return r
    x = r[1]
    if type(x) is float:
        return ("const", float, struct.pack("<d", x))
    return ("const", int, x) if type(x) is int else ("const", id(x))
