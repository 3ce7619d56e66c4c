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
  the masks of their reverse pass) become one statement over the matrix.

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

from . import arith, ops
from .batching import batch_sum_p, bcast_p, index_p, numpy_module, stack_p, vdot_p
from .core import Primitive

__all__ = ["compile_batched"]

Ref = tuple[str, Any]


def compile_batched(
    program: list[tuple[Any, ...]], returns: list[Ref], n_inputs: int, batched: set[str],
    header: str, mask: Primitive, guard_error: type[Exception], fname: str,
) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], str]:
    np = numpy_module()
    em = _Emitter(np, batched, guard_error)
    lines = [header]
    if n_inputs:
        lines.append(f"    {', '.join(f'x{k}' for k in range(n_inputs))}, = leaves")
    lines.append("    with ERRSTATE(all='ignore'):")
    em.lines = lines
    for ins in program:
        em.emit(ins, mask)
    em.flush_all(mask)
    em.put(f"return ({''.join(em.text(r) + ', ' for r in returns)})")
    source = "\n".join(lines) + "\n"
    em.namespace["K"] = tuple(em.consts)
    exec(compile(source, f"<fgrad.jit {fname}>", "exec"), em.namespace)  # noqa: S102
    return em.namespace["compiled"], source


class _Emitter:
    def __init__(self, np: Any, batched: set[str], guard_error: type[Exception]) -> None:
        self.np = np
        self.batched = batched
        self.lines: list[str] = []
        self.consts: list[Any] = []
        self.funcs: dict[int, str] = {}
        self.namespace: dict[str, Any] = {
            "ERRSTATE": np.errstate, "ARRAY": np.array, "MAXIMUM": np.maximum, "FULL": np.full,
            "DOT": np.dot, "GUARD": guard_error, "DIV": arith._div_impl, "NAN": float("nan"),
            "INF": float("inf"),
        }
        self.stacks: dict[tuple[Any, ...], str] = {}
        self.dots: dict[tuple[Any, ...], tuple[tuple[Ref, ...], list[Any]]] = {}
        self.vdots: list[tuple[str, Ref, Ref]] = []
        self.sums: list[tuple[str, Ref]] = []
        self.pending: dict[str, str] = {}  # member register -> its group's kind
        # Statements that need a pending group's result wait here, so that the
        # group can keep growing (a relu between two dots of one layer).
        self.deferred: list[tuple[Any, ...]] = []
        self.waiting: set[str] = set()
        # Registers that are row j of a matrix of k rows; "virtual" ones are
        # only written out (``v = M[j]``) if something reads them singly.
        self.homes: dict[str, tuple[str, int, int]] = {}
        self.virtual: set[str] = set()
        self.fresh = 0

    # -- names --------------------------------------------------------------
    def put(self, line: str) -> None:
        self.lines.append("        " + line)

    def is_b(self, r: Ref) -> bool:
        return r[1] in self.batched if r[0] == "var" else type(r[1]) is self.np.ndarray

    def text(self, r: Ref) -> str:
        if r[0] == "var":
            if r[1] in self.virtual:
                self.virtual.discard(r[1])
                m, j, _ = self.homes[r[1]]
                self.put(f"{r[1]} = {m}[{j}]")
            return str(r[1])
        x = r[1]
        if type(x) is float and x == x and abs(x) != float("inf"):
            return f"({x!r})"
        if type(x) is int:
            return f"({x!r})"
        self.consts.append(x)
        return f"K[{len(self.consts) - 1}]"

    def func(self, fn: Callable[..., Any]) -> str:
        name = self.funcs.get(id(fn))
        if name is None:
            name = f"f{len(self.funcs)}"
            self.funcs[id(fn)] = name
            self.namespace[name] = fn
        return name

    def temp(self) -> str:
        self.fresh += 1
        return f"t{self.fresh}"

    def stack(self, refs: tuple[Ref, ...]) -> str:
        """The (len(refs), batch) matrix of batched registers, made once."""
        homes = [self.homes.get(r[1]) if r[0] == "var" else None for r in refs]
        h0 = homes[0]
        if h0 is not None and h0[2] == len(refs) and all(
            h is not None and h[0] == h0[0] and h[1] == j for j, h in enumerate(homes)
        ):
            return h0[0]  # the rows of a matrix, in order: the matrix itself
        key = tuple(map(_key, refs))
        name = self.stacks.get(key)
        if name is None:
            name = self.stacks[key] = self.temp()
            self.put(f"{name} = ARRAY(({''.join(self.text(r) + ', ' for r in refs)}))")
        return name

    # -- statements ---------------------------------------------------------
    def emit(self, ins: tuple[Any, ...], mask: Primitive) -> None:
        used = ins[3] if ins[0] == "op" else ins[2:4]
        if self.elementwise(ins) or any(
            r[0] == "var" and (r[1] in self.pending or r[1] in self.waiting) for r in used
        ):
            if not self.groupable(ins):
                self.deferred.append(ins)
                if ins[0] == "op":
                    self.waiting.add(ins[1])
                return
            self.flush_all(mask)  # a group member whose inputs are not computed yet
        self.emit_now(ins, mask)

    def groupable(self, ins: tuple[Any, ...]) -> bool:
        if ins[0] != "op" or ins[1] not in self.batched and ins[2] is not batch_sum_p:
            return False
        prim, args = ins[2], ins[3]
        if prim is arith.dot_p:
            return self.dot_halves(args) is not None
        if prim is vdot_p:
            return self.is_b(args[0]) and self.is_b(args[1])
        return prim is batch_sum_p and self.is_b(args[0])

    def elementwise(self, ins: tuple[Any, ...]) -> bool:
        return ins[0] == "op" and ins[1] in self.batched and ins[2] not in _NOT_ELEMENTWISE

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
        key = tuple(map(_key, halves[0]))
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
        while remaining:  # level by level: a level uses only earlier levels
            later_vars = {ins[1] for ins in remaining if ins[0] == "op"}
            ready: list[tuple[Any, ...]] = []
            later: list[tuple[Any, ...]] = []
            for ins in remaining:
                used = ins[3] if ins[0] == "op" else ins[2:4]
                blocked = any(r[0] == "var" and r[1] in later_vars for r in used)
                (later if blocked else ready).append(ins)
            buckets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            for ins in ready:
                if self.elementwise(ins):
                    buckets.setdefault(self.row_key(ins), []).append(ins)
                else:
                    self.emit_now(ins, mask)
            for key, members in buckets.items():
                if not self.emit_rows(key, members, mask):
                    for ins in members:
                        self.emit_now(ins, mask)
            remaining = later

    def row_key(self, ins: tuple[Any, ...]) -> tuple[Any, ...]:
        """Statements with equal keys can run as one over matrix rows: the
        same primitive, and per argument the same matrix (rows), the same
        batch (broadcast), or a scalar (stacked into a column)."""
        key: list[Any] = [ins[2]]
        for r in ins[3]:
            if r[0] == "var" and r[1] in self.homes:
                key.append(("m", self.homes[r[1]][0]))
            elif self.is_b(r):
                key.append(("b", _key(r)))
            else:
                key.append(("s",))
        return tuple(key)

    def emit_rows(self, key: tuple[Any, ...], members: list[tuple[Any, ...]], mask: Primitive) -> bool:
        if len(members) < 2:
            return False
        kinds = key[1:]
        n = len(members)
        matrices = [p for p, k in enumerate(kinds) if k[0] == "m"]
        perms: dict[int, list[int]] = {}
        if matrices:
            # Members in the row order of the first matrix argument; other
            # matrices may hold their rows in another order (the reverse pass
            # visits a layer's neurons backwards): read them permuted.
            if any(self.homes[members[0][3][p][1]][2] != n for p in matrices):
                return False
            first = matrices[0]
            members = sorted(members, key=lambda ins: self.homes[ins[3][first][1]][1])
            for p in matrices:
                rows = [self.homes[ins[3][p][1]][1] for ins in members]
                if sorted(rows) != list(range(n)):
                    return False
                perms[p] = rows
        texts = []
        for p, k in enumerate(kinds):
            if k[0] == "m":
                rows = perms[p]
                if rows == list(range(n)):
                    texts.append(k[1])
                elif rows == list(range(n - 1, -1, -1)):
                    texts.append(f"{k[1]}[::-1]")
                else:
                    texts.append(f"{k[1]}[[{', '.join(map(str, rows))}]]")
            elif k[0] == "b":
                texts.append(self.text(members[0][3][p]))
            else:
                column = [self.text(ins[3][p]) for ins in members]
                if len(set(column)) == 1:
                    texts.append(column[0])
                else:
                    c = self.temp()
                    self.put(f"{c} = ARRAY(({''.join(x + ', ' for x in column)}))[:, None]")
                    texts.append(c)
        out = self.temp()
        self.put(f"{out} = {self.formula(key[0], texts, True, mask)}")
        for j, ins in enumerate(members):
            self.homes[ins[1]] = (out, j, len(members))
            self.virtual.add(ins[1])
        return True

    def emit_dots(self, batch_half: tuple[Ref, ...], members: list[Any]) -> None:
        x = self.stack(batch_half)
        rows = ", ".join("(" + "".join(self.text(w) + ", " for w in ws) + ")" for _, ws, _ in members)
        z = self.temp()
        self.put(f"{z} = ARRAY(({rows},)) @ {x}")
        if any(b is not None for _, _, b in members):
            biases = "".join((self.text(b) if b is not None else "0.0") + ", " for _, _, b in members)
            self.put(f"{z} += ARRAY(({biases}))[:, None]")
        for k, (var, _, _) in enumerate(members):
            self.homes[var] = (z, k, len(members))
            self.virtual.add(var)
            self.pending.pop(var, None)

    def emit_vdots(self, vdots: list[tuple[str, Ref, Ref]]) -> None:
        """One product per pair of source matrices: ``A @ B.T`` holds every
        ``vdot(a_i, b_j)`` of a layer's weights."""
        blocks: dict[tuple[Any, Any], list[tuple[str, Ref, Ref]]] = {}
        for v in vdots:
            blocks.setdefault((self.source(v[1]), self.source(v[2])), []).append(v)
        for block in blocks.values():
            lefts = self.in_row_order({_key(a): a for _, a, _ in block}.values())
            rights = self.in_row_order({_key(b): b for _, _, b in block}.values())
            if len(lefts) * len(rights) > 2 * len(block) + 8:  # sparse: one at a time
                for var, a, b in block:
                    self.put(f"{var} = float(DOT({self.text(a)}, {self.text(b)}))")
                    self.pending.pop(var, None)
                continue
            m = self.temp()
            self.put(f"{m} = ({self.stack(tuple(lefts))} @ {self.stack(tuple(rights))}.T).tolist()")
            li = {_key(r): i for i, r in enumerate(lefts)}
            ri = {_key(r): i for i, r in enumerate(rights)}
            for var, a, b in block:
                self.put(f"{var} = {m}[{li[_key(a)]}][{ri[_key(b)]}]")
                self.pending.pop(var, None)

    def source(self, r: Ref) -> Any:
        """The matrix a register is a row of, or the register itself."""
        home = self.homes.get(r[1]) if r[0] == "var" else None
        return ("m", home[0]) if home is not None else _key(r)

    def in_row_order(self, refs: Any) -> list[Ref]:
        out: list[Ref] = list(refs)
        if all(r[0] == "var" and r[1] in self.homes for r in out):
            out.sort(key=lambda r: self.homes[r[1]][1])
        return out

    def emit_sums(self, sums: list[tuple[str, Ref]]) -> None:
        if not sums:
            return
        s = self.temp()
        self.put(f"{s} = {self.stack(tuple(r for _, r in sums))}.sum(axis=1).tolist()")
        for k, (var, _) in enumerate(sums):
            self.put(f"{var} = {s}[{k}]")
            self.pending.pop(var, None)


def _key(r: Ref) -> Any:
    """A hashable stand-in for a ref: constants other than numbers (arrays)
    by identity."""
    return r if r[0] == "var" or type(r[1]) in (float, int) else ("const", id(r[1]))


_NOT_ELEMENTWISE = frozenset({arith.dot_p, vdot_p, batch_sum_p, stack_p, index_p, bcast_p})
