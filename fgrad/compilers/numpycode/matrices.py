"""Groups that become matrix products: one layer's dots, and the sums over the batch.

- dots whose batched half is the same registers (one layer's neurons, or
  the cotangents flowing back into one layer's inputs) become one matrix
  product: ``Z = W @ X`` and each dot a row of ``Z`` (:class:`LayerDots`);
- ``vdot(a, b)`` (a shared weight's gradient, summed over the batch)
  become one product ``A @ B.T`` read back as floats, and ``batch_sum(g)``
  (a shared bias's gradient) one row-sum (:class:`BatchSums`).

A group collects its members as the statements arrive; its members are
``pending`` in the registers until the group is flushed. Each group names
the primitives it groups (``prims``), says whether a statement would join
(``takes``), joins it (``add``, False if it cannot) and emits its members
(``flush``).
"""

from __future__ import annotations

from typing import Any

from fgrad.compilers.numpycode.registers import Ref, Registers, key_of
from fgrad.engine.core import Primitive
from fgrad.primitives import arith
from fgrad.transforms.batching import batch_sum_p, vdot_p

__all__ = ["BatchSums", "LayerDots"]


class LayerDots:
    """Batched dots over the same registers, emitted as one ``W @ X`` each."""

    prims = (arith.dot_p,)

    def __init__(self, regs: Registers) -> None:
        self.regs = regs
        self.code = regs.code
        # batch half's key -> (the batch half, [(result, shared half, bias or None)])
        self.groups: dict[tuple[Any, ...], tuple[tuple[Ref, ...], list[Any]]] = {}

    def takes(self, var: str, prim: Primitive, args: tuple[Ref, ...]) -> bool:
        return var in self.regs.batched and self.halves(args) is not None

    def add(self, var: str, prim: Primitive, args: tuple[Ref, ...]) -> bool:
        """Joins the dot ``var`` to its group if it can be a row of one (else False)."""
        if var not in self.regs.batched:
            return False
        halves = self.halves(args)
        if halves is None:
            return False
        bias = args[-1] if len(args) % 2 else None
        key = tuple(map(key_of, halves[0]))
        self.groups.setdefault(key, (halves[0], []))[1].append((var, halves[1], bias))
        self.regs.pending[var] = "dot"
        return True

    def halves(self, args: tuple[Ref, ...]) -> tuple[tuple[Ref, ...], tuple[Ref, ...]] | None:
        """(batched half, shared half) of a dot that can join a matrix product."""
        is_b = self.regs.is_b
        n = len(args) // 2
        left, right = args[:n], args[n : 2 * n]
        if n == 0 or (len(args) % 2 and is_b(args[-1])):
            return None
        for batch_half, shared_half in ((right, left), (left, right)):
            if all(map(is_b, batch_half)) and not any(map(is_b, shared_half)):
                return batch_half, shared_half
        return None

    def flush(self) -> None:
        groups, self.groups = self.groups, {}
        for batch_half, members in groups.values():
            self.emit(batch_half, members)

    def emit(self, batch_half: tuple[Ref, ...], members: list[Any]) -> None:
        regs, code = self.regs, self.code
        x = regs.stack(batch_half)
        index = [regs.input_index(ws) for _, ws, _ in members]
        if all(i is not None for i in index) and len({len(i) for i in index}) == 1:  # type: ignore[arg-type]
            weights = regs.gather_inputs(index)
        else:
            rows = ", ".join("(" + "".join(regs.text(w) + ", " for w in ws) + ")" for _, ws, _ in members)
            weights = f"ARRAY(({rows},))"
        z = code.temp()
        code.put(f"{z} = {weights} @ {x}")
        if all(b is not None for _, _, b in members):
            code.put(f"{z} += {regs.stack(tuple(b for _, _, b in members))}[:, None]")
        elif any(b is not None for _, _, b in members):
            biases = "".join((regs.text(b) if b is not None else "0.0") + ", " for _, _, b in members)
            code.put(f"{z} += ARRAY(({biases}))[:, None]")
        for k, (var, _, _) in enumerate(members):
            regs.place(var, z, k, len(members), False)
            regs.inexact.add(var)  # (BLAS's order, not the dot's)


class BatchSums:
    """Sums over the batch to shared floats: weight gradients ``vdot(a, b)``
    as ``A @ B.T``, bias gradients ``batch_sum(g)`` as one row-sum."""

    prims = (vdot_p, batch_sum_p)

    def __init__(self, regs: Registers) -> None:
        self.regs = regs
        self.code = regs.code
        self.vdots: list[tuple[str, Ref, Ref]] = []
        self.sums: list[tuple[str, Ref]] = []

    def takes(self, var: str, prim: Primitive, args: tuple[Ref, ...]) -> bool:
        if prim is vdot_p:
            return self.regs.is_b(args[0]) and self.regs.is_b(args[1])
        return self.regs.is_b(args[0])

    def add(self, var: str, prim: Primitive, args: tuple[Ref, ...]) -> bool:
        """Joins ``var`` to the vdots or the sums if its arguments are batches (else False)."""
        regs = self.regs
        if prim is vdot_p:
            if not (regs.is_b(args[0]) and regs.is_b(args[1])):
                return False
            self.vdots.append((var, args[0], args[1]))
            regs.pending[var] = "vdot"
        else:
            if not regs.is_b(args[0]):
                return False
            self.sums.append((var, args[0]))
            regs.pending[var] = "sum"
        return True

    def flush(self) -> None:
        vdots, self.vdots = self.vdots, []
        self.emit_vdots(vdots)
        sums, self.sums = self.sums, []
        self.emit_sums(sums)

    def emit_vdots(self, vdots: list[tuple[str, Ref, Ref]]) -> None:
        """One product per pair of source matrices: ``A @ B.T`` holds every
        ``vdot(a_i, b_j)`` of a layer's weights."""
        regs, code = self.regs, self.code
        blocks: dict[tuple[Any, Any], list[tuple[str, Ref, Ref]]] = {}
        for v in vdots:
            blocks.setdefault((regs.source(v[1]), regs.source(v[2])), []).append(v)
        for block in blocks.values():
            lefts = regs.in_row_order({key_of(a): a for _, a, _ in block}.values())
            rights = regs.in_row_order({key_of(b): b for _, _, b in block}.values())
            if len(lefts) * len(rights) > 2 * len(block) + 8:  # sparse: one at a time
                for var, a, b in block:
                    code.put(f"{var} = float(DOT({regs.text(a)}, {regs.text(b)}))")
                    regs.pending.pop(var, None)
                continue
            m = code.temp()
            if len(lefts) == 1:  # a matrix-vector product is enough
                code.put(f"{m} = {regs.stack(tuple(rights))} @ {regs.text(lefts[0])}")
            elif len(rights) == 1:
                code.put(f"{m} = {regs.stack(tuple(lefts))} @ {regs.text(rights[0])}")
            else:
                code.put(f"{m} = ({regs.stack(tuple(lefts))} @ {regs.stack(tuple(rights))}.T).ravel()")
            li = {key_of(r): i for i, r in enumerate(lefts)}
            ri = {key_of(r): i for i, r in enumerate(rights)}
            q = len(rights)
            for var, a, b in block:
                regs.place(var, m, li[key_of(a)] * q + ri[key_of(b)], len(lefts) * q, True)
                regs.inexact.add(var)

    def emit_sums(self, sums: list[tuple[str, Ref]]) -> None:
        regs, code = self.regs, self.code
        if not sums:
            return
        if len(sums) == 1:
            code.put(f"{sums[0][0]} = float({regs.text(sums[0][1])}.sum())")
            regs.pending.pop(sums[0][0], None)
            return
        s = code.temp()
        code.put(f"{s} = {regs.stack(tuple(r for _, r in sums))}.sum(axis=1)")
        for k, (var, _) in enumerate(sums):
            regs.place(var, s, k, len(sums), True)
            regs.inexact.add(var)
