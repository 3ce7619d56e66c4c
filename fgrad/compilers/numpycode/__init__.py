"""numpy code for a jit trace that holds batches (vmap's numpy backend).

A batched register holds one value per example in a 1-D array, so each
statement is one numpy operation over the whole batch. Per-example scalar
code is full of dots over the same inputs (the neurons of a layer), which
one at a time would cost a numpy call per weight; they are grouped here:

- dots whose batched half is the same registers (one layer's neurons, or
  the cotangents flowing back into one layer's inputs) become one matrix
  product: ``Z = W @ X`` and each dot a row of ``Z``;
- ``vdot(a, b)`` (a shared weight's gradient, summed over the batch)
  become one product ``A @ B.T`` read back as floats;
- ``batch_sum(g)`` (a shared bias's gradient) become one row-sum;
- elementwise statements over the rows of one matrix (the relus of a layer,
  the masks of their reverse pass) become one statement over the matrix;
- likewise, isomorphic scalar statements (each weight's penalty, gradient
  and update) become one statement over a vector of them, read back as
  floats (``.tolist()``) only where a single one is needed.

Elementwise statements wait until something else needs them, and are then
emitted level by level (each level's statements only use earlier ones), so
that rows of one matrix meet in one statement. A group is emitted where its
first result is needed, which is after every member's inputs exist.

The sums run in numpy's order, not left to right: results agree with the
scalar program to rounding (tested to 1e-12).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fgrad.compilers.numpycode.registers import Ref, Registers, key_of
from fgrad.engine.core import Primitive
from fgrad.engine.trace import protected
from fgrad.primitives import arith, ops
from fgrad.transforms.batching import (
    batch_sum_p,
    bcast_p,
    data_p,
    index_p,
    numpy_module,
    onehot_p,
    stack_p,
    vdot_p,
)

__all__ = ["compile_batched"]


def compile_batched(
    program: list[tuple[Any, ...]],
    returns: list[Ref],
    n_inputs: int,
    batched: set[str],
    header: str,
    mask: Primitive,
    guard_error: type[Exception],
    fname: str,
) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], str]:
    np = numpy_module()
    em = _Emitter(np, batched, guard_error, mask)
    lines = [header]
    if n_inputs:
        lines.append(f"    {', '.join(f'x{k}' for k in range(n_inputs))}, = leaves")
    em.lines = lines
    for ins in program:
        em.emit(ins, mask)
    em.flush_all(mask)
    em.put(f"return ({em.returns(returns)})")
    source = "\n".join(lines) + "\n"
    em.namespace["K"] = tuple(em.consts)
    exec(compile(source, f"<fgrad.jit {fname}>", "exec"), em.namespace)  # noqa: S102
    return _ignoring_fp_errors(em.namespace["compiled"], np), source


def _ignoring_fp_errors(
    compiled: Callable[[Sequence[Any]], tuple[Any, ...]], np: Any
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``compiled`` run with numpy's floating-point errors ignored (IEEE
    results, as the scalar ops give), numpy's settings restored after it
    even if an interrupt lands at any bytecode (``fgrad.engine.trace.protected``)."""

    def run(leaves: Sequence[Any]) -> tuple[Any, ...]:
        saved = np.geterr()
        return protected(
            lambda: np.seterr(all="ignore"), lambda: compiled(leaves), lambda: np.seterr(**saved)
        )

    return run


class _Emitter(Registers):
    """Statements in, numpy source out: groups what it can (module doc)."""

    def __init__(self, np: Any, batched: set[str], guard_error: type[Exception], mask: Primitive) -> None:
        super().__init__(np, batched, guard_error)
        self.mask = mask
        self.dots: dict[tuple[Any, ...], tuple[tuple[Ref, ...], list[Any]]] = {}
        self.vdots: list[tuple[str, Ref, Ref]] = []
        self.sums: list[tuple[str, Ref]] = []
        self.pending: dict[str, str] = {}  # member register -> its group's kind
        # Statements that need a pending group's result wait here, so that the
        # group can keep growing (a relu between two dots of one layer).
        self.deferred: list[tuple[Any, ...]] = []
        self.waiting: set[str] = set()
        self.guard_waiting = False

    def emit(self, ins: tuple[Any, ...], mask: Primitive) -> None:
        used = ins[3] if ins[0] == "op" else ins[2:4]
        # Nothing moves ahead of a waiting guard: a statement after it may
        # only be valid when it holds (a user's impl can raise on a domain).
        blocked = self.guard_waiting or any(
            r[0] == "var" and (r[1] in self.pending or r[1] in self.waiting) for r in used
        )
        if self.groupable(ins):
            if blocked:
                self.flush_all(mask)  # a group member whose inputs are not computed yet
            self.emit_now(ins, mask)
        elif blocked or self.elementwise(ins):
            self.deferred.append(ins)
            self.guard_waiting = self.guard_waiting or ins[0] == "guard"
            if ins[0] == "op":
                self.waiting.add(ins[1])
        else:
            self.emit_now(ins, mask)

    def groupable(self, ins: tuple[Any, ...]) -> bool:
        if ins[0] != "op":
            return False
        prim, args = ins[2], ins[3]
        if prim is arith.dot_p:
            return ins[1] in self.batched and self.dot_halves(args) is not None
        if prim is vdot_p:
            return self.is_b(args[0]) and self.is_b(args[1])
        return prim is batch_sum_p and self.is_b(args[0])

    def elementwise(self, ins: tuple[Any, ...]) -> bool:
        if ins[0] != "op" or ins[2] in _NOT_ELEMENTWISE:
            return False
        prim = ins[2]
        if ins[1] in self.batched:
            return True
        return prim in _SCALAR_OK or prim is self.mask or prim.vectorized is not None

    def emit_now(self, ins: tuple[Any, ...], mask: Primitive) -> None:
        if ins[0] == "guard":
            _, op, a, b, result = ins
            self.put(f"if {'not ' if result else ''}({self.text(a)} {op} {self.text(b)}): raise GUARD")
            return
        _, var, prim, args = ins
        if prim is arith.dot_p and var in self.batched and self.add_dot(var, args):
            return
        if prim is vdot_p and self.is_b(args[0]) and self.is_b(args[1]):
            self.vdots.append((var, args[0], args[1]))
            self.pending[var] = "vdot"
            return
        if prim is batch_sum_p and self.is_b(args[0]):
            self.sums.append((var, args[0]))
            self.pending[var] = "sum"
            return
        self.put(f"{var} = {self.expression(prim, args, var in self.batched, mask)}")

    def expression(self, prim: Primitive, args: tuple[Ref, ...], batch: bool, mask: Primitive) -> str:
        return self.formula(prim, [self.text(a) for a in args], batch, mask)

    def formula(self, prim: Primitive, t: list[str], batch: bool, mask: Primitive) -> str:
        if prim is arith.add or prim is arith.sub or prim is arith.mul:
            return f"{t[0]} {'+' if prim is arith.add else '-' if prim is arith.sub else '*'} {t[1]}"
        if prim is arith.neg:
            return f"-{t[0]}"
        if prim is arith.sum_p and t:
            return " + ".join(t)
        if prim is arith.dot_p:
            n = len(t) // 2
            terms = [t[-1]] if len(t) % 2 else []
            return " + ".join(terms + [f"{t[i]} * {t[n + i]}" for i in range(n)]) or "0.0"
        if not batch:
            if prim is arith.div:
                return f"DIV({t[0]}, {t[1]})"
            return f"{self.func(mask.impl if prim is mask else prim.impl)}({', '.join(t)})"
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
        return f"{self.func(fn)}({', '.join(t)})"

    # -- groups -------------------------------------------------------------
    def dot_halves(self, args: tuple[Ref, ...]) -> tuple[tuple[Ref, ...], tuple[Ref, ...]] | None:
        """(batched half, shared half) of a dot that can join a matrix product."""
        n = len(args) // 2
        left, right = args[:n], args[n : 2 * n]
        if n == 0 or (len(args) % 2 and self.is_b(args[-1])):
            return None
        for batch_half, shared_half in ((right, left), (left, right)):
            if all(map(self.is_b, batch_half)) and not any(map(self.is_b, shared_half)):
                return batch_half, shared_half
        return None

    def add_dot(self, var: str, args: tuple[Ref, ...]) -> bool:
        halves = self.dot_halves(args)
        if halves is None:
            return False
        bias = args[-1] if len(args) % 2 else None
        key = tuple(map(key_of, halves[0]))
        self.dots.setdefault(key, (halves[0], []))[1].append((var, halves[1], bias))
        self.pending[var] = "dot"
        return True

    def flush(self, kind: str) -> None:
        if kind == "dot":
            dots, self.dots = self.dots, {}
            for batch_half, members in dots.values():
                self.emit_dots(batch_half, members)
        elif kind == "vdot":
            vdots, self.vdots = self.vdots, []
            self.emit_vdots(vdots)
        else:
            sums, self.sums = self.sums, []
            self.emit_sums(sums)

    def flush_all(self, mask: Primitive) -> None:
        for kind in ("dot", "vdot", "sum"):
            self.flush(kind)
        remaining, self.deferred = self.deferred, []
        self.waiting.clear()
        self.guard_waiting = False
        # Level by level: a statement's level is one more than the deepest
        # waiting statement it reads, so each level reads only earlier ones;
        # and statements after a guard come after it (a barrier).
        level: dict[str, int] = {}
        by_level: dict[int, list[tuple[Any, ...]]] = {}
        barrier = -1
        for ins in remaining:
            used = ins[3] if ins[0] == "op" else ins[2:4]
            lv = 1 + max((level.get(r[1], -1) for r in used if r[0] == "var"), default=barrier)
            lv = max(lv, barrier + 1)
            if ins[0] == "op":
                level[ins[1]] = lv
            else:
                barrier = lv
            by_level.setdefault(lv, []).append(ins)
        for lv in sorted(by_level):
            buckets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            for ins in by_level[lv]:
                if self.elementwise(ins):
                    buckets.setdefault(self.row_key(ins), []).append(ins)
                else:
                    self.emit_now(ins, mask)
            for key, members in buckets.items():
                if not self.emit_rows(key, members, mask):
                    for ins in members:
                        self.emit_now(ins, mask)
        if self.pending:  # a waiting statement joined a group: emit it too
            self.flush_all(mask)

    def row_key(self, ins: tuple[Any, ...]) -> tuple[Any, ...]:
        """Statements with equal keys can run as one over matrix rows: the
        same primitive, and per argument the same matrix (rows), the same
        batch (broadcast), the same int, or a scalar (stacked into a column)."""
        scalar = ins[1] not in self.batched
        key: list[Any] = [ins[2], scalar]
        for r in ins[3]:
            home = self.homes.get(r[1]) if r[0] == "var" else None
            if home is not None and home[3] == scalar:
                key.append(("m", home[0]))
            elif not scalar and self.is_b(r):
                key.append(("b", key_of(r)))
            elif r[0] == "const" and type(r[1]) is int:
                # an int may be a parameter (round's digits, an index), which
                # a primitive's numpy version takes as one int, not a column
                key.append(("s", r[1]))
            else:
                key.append(("s",))
        return tuple(key)

    def emit_rows(self, key: tuple[Any, ...], members: list[tuple[Any, ...]], mask: Primitive) -> bool:
        if len(members) < 2:
            return False
        scalar, kinds = key[1], key[2:]
        n = len(members)
        matrices = [p for p, k in enumerate(kinds) if k[0] == "m"]
        perms: dict[int, list[int]] = {}
        if matrices:
            # Members in the row order of the first matrix argument; the
            # others are read in that order: whole, sliced, reversed (the
            # reverse pass visits a layer's neurons backwards) or gathered.
            first = matrices[0]
            members = sorted(members, key=lambda ins: self.homes[ins[3][first][1]][1])
            for p in matrices:
                perms[p] = [self.homes[ins[3][p][1]][1] for ins in members]
        texts = []
        for p, k in enumerate(kinds):
            if k[0] == "m":
                texts.append(self.gather(k[1], perms[p], self.homes[members[0][3][p][1]][2]))
            elif k[0] == "b":
                texts.append(self.text(members[0][3][p]))
            else:
                refs = tuple(ins[3][p] for ins in members)
                if len({key_of(r) for r in refs}) == 1:
                    texts.append(self.text(refs[0]))  # the same scalar for all
                else:  # a vector of scalars; a column beside a batch's rows
                    texts.append(self.stack(refs) + ("" if scalar else "[:, None]"))
        out = self.temp()
        self.put(f"{out} = {self.formula(key[0], texts, True, mask)}")
        for j, ins in enumerate(members):
            self.homes[ins[1]] = (out, j, n, scalar)
            self.virtual.add(ins[1])
        return True

    def emit_dots(self, batch_half: tuple[Ref, ...], members: list[Any]) -> None:
        x = self.stack(batch_half)
        index = [self.input_index(ws) for _, ws, _ in members]
        if all(i is not None for i in index) and len({len(i) for i in index}) == 1:  # type: ignore[arg-type]
            weights = self.gather_inputs(index)
        else:
            rows = ", ".join("(" + "".join(self.text(w) + ", " for w in ws) + ")" for _, ws, _ in members)
            weights = f"ARRAY(({rows},))"
        z = self.temp()
        self.put(f"{z} = {weights} @ {x}")
        if all(b is not None for _, _, b in members):
            self.put(f"{z} += {self.stack(tuple(b for _, _, b in members))}[:, None]")
        elif any(b is not None for _, _, b in members):
            biases = "".join((self.text(b) if b is not None else "0.0") + ", " for _, _, b in members)
            self.put(f"{z} += ARRAY(({biases}))[:, None]")
        for k, (var, _, _) in enumerate(members):
            self.homes[var] = (z, k, len(members), False)
            self.virtual.add(var)
            self.pending.pop(var, None)

    def emit_vdots(self, vdots: list[tuple[str, Ref, Ref]]) -> None:
        """One product per pair of source matrices: ``A @ B.T`` holds every
        ``vdot(a_i, b_j)`` of a layer's weights."""
        blocks: dict[tuple[Any, Any], list[tuple[str, Ref, Ref]]] = {}
        for v in vdots:
            blocks.setdefault((self.source(v[1]), self.source(v[2])), []).append(v)
        for block in blocks.values():
            lefts = self.in_row_order({key_of(a): a for _, a, _ in block}.values())
            rights = self.in_row_order({key_of(b): b for _, _, b in block}.values())
            if len(lefts) * len(rights) > 2 * len(block) + 8:  # sparse: one at a time
                for var, a, b in block:
                    self.put(f"{var} = float(DOT({self.text(a)}, {self.text(b)}))")
                    self.pending.pop(var, None)
                continue
            m = self.temp()
            if len(lefts) == 1:  # a matrix-vector product is enough
                self.put(f"{m} = {self.stack(tuple(rights))} @ {self.text(lefts[0])}")
            elif len(rights) == 1:
                self.put(f"{m} = {self.stack(tuple(lefts))} @ {self.text(rights[0])}")
            else:
                self.put(f"{m} = ({self.stack(tuple(lefts))} @ {self.stack(tuple(rights))}.T).ravel()")
            li = {key_of(r): i for i, r in enumerate(lefts)}
            ri = {key_of(r): i for i, r in enumerate(rights)}
            q = len(rights)
            for var, a, b in block:
                self.homes[var] = (m, li[key_of(a)] * q + ri[key_of(b)], len(lefts) * q, True)
                self.virtual.add(var)
                self.pending.pop(var, None)

    def emit_sums(self, sums: list[tuple[str, Ref]]) -> None:
        if not sums:
            return
        if len(sums) == 1:
            self.put(f"{sums[0][0]} = float({self.text(sums[0][1])}.sum())")
            self.pending.pop(sums[0][0], None)
            return
        s = self.temp()
        self.put(f"{s} = {self.stack(tuple(r for _, r in sums))}.sum(axis=1)")
        for k, (var, _) in enumerate(sums):
            self.homes[var] = (s, k, len(sums), True)
            self.virtual.add(var)
            self.pending.pop(var, None)


_NOT_ELEMENTWISE = frozenset({vdot_p, batch_sum_p, stack_p, index_p, bcast_p, onehot_p, data_p})
# Scalar statements that may run as one numpy statement over a vector.
_SCALAR_OK = frozenset(
    {arith.add, arith.sub, arith.mul, arith.div, arith.neg, arith.sum_p, arith.dot_p, ops.relu, arith.step}
)
