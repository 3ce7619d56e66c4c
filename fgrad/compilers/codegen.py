"""From a jit trace to a runnable program: straight-line source or a table.

One statement per needed node, in tape order (``v12 = v3 * v7``); shared
subexpressions computed once; guards checked as soon as their operands
exist; registers reused after their last use. The source itself is written
by :mod:`fgrad.compilers.pysource` (in pieces, for large programs); traces
holding vmap's batches go to :mod:`fgrad.compilers.numpycode`. Very large
programs run as a table of (function, registers) instead, as compiling them
costs more than it saves.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from fgrad.compilers.codetable import GuardFailed, _table
from fgrad.compilers.numpycode import compile_batched
from fgrad.compilers.numpycode.fusion import fuse_chunked_maps
from fgrad.compilers.pysource import MASK, Emitter, Ref, pieces_of, safe_name, statement
from fgrad.engine.core import Expr, _is_array
from fgrad.engine.trace import Trace
from fgrad.primitives import arith

__all__ = ["GuardFailed", "compile_trace"]


def compile_trace(
    tr: Trace, inputs: list[Expr], outs: list[Any], fname: str, max_compiled_ops: int
) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], str, int]:
    """Turn a jit trace into ``(run, source, number of guards)``.

    ``run(leaves)`` computes the outputs' flat values from the inputs'
    leaves, raising ``GuardFailed`` when a recorded comparison comes out
    differently. Only nodes that outputs or guards need are computed.
    """
    tape = tr.tape
    assert tape is not None and tr.guards is not None

    def mine(x: Any) -> bool:
        return type(x) is Expr and x.trace is tr

    guards_at: dict[int, list[tuple[str, Any, Any, bool]]] = {}
    needed = bytearray(len(tape))
    for o in outs:
        if mine(o):
            needed[o.seq] = 1
    seen_guards = set()
    for op, x, y, result in tr.guards:
        at = max((v.seq for v in (x, y) if mine(v)), default=-1)
        ident = (op, id(x) if mine(x) else ("c", x), id(y) if mine(y) else ("c", y))
        if at < 0 or ident in seen_guards:
            continue  # a comparison of constants holds forever
        seen_guards.add(ident)
        guards_at.setdefault(at, []).append((op, x, y, result))
        for v in (x, y):
            if mine(v):
                needed[v.seq] = 1
    for i in range(len(tape) - 1, -1, -1):
        if needed[i]:
            for a in tape[i].args:
                if type(a) is Expr and a.trace is tr:
                    needed[a.seq] = 1

    refs: list[Any] = [None] * len(tape)  # node seq -> its Ref, once computed (tape order: before any use)
    for k, node in enumerate(inputs):
        refs[node.seq] = ("var", f"x{k}")

    def ref(a: Any) -> Ref:
        if mine(a):
            r: Ref = refs[a.seq]
            assert r is not None
            return r
        return ("const", a)

    # CSE: a statement's key is its primitive and, per argument, the register
    # (its ref) or the constant's key (floats by their bits).
    cse: dict[tuple[Any, ...], Ref] = {}
    program: list[tuple[Any, ...]] = []
    batched: set[str] = set()  # registers holding a batch (vmap's numpy backend)
    append = program.append
    for i, node in enumerate(tape):
        prim = node.prim
        if not needed[i]:
            continue
        if prim is None:  # an input: only its guards
            for op, x, y, result in guards_at.get(i, ()):
                append(("guard", op, ref(x), ref(y), result))
            continue
        args = tuple([refs[a.seq] if type(a) is Expr and a.trace is tr else ("const", a) for a in node.args])
        key = (id(prim), *[r if r[0] == "var" else _const_key(r[1]) for r in args])
        found = cse.get(key)
        if found is None:
            found = cse[key] = ("var", f"v{i}")
            append(("op", f"v{i}", prim, args))
            if _is_array(node.value):
                batched.add(f"v{i}")
        refs[i] = found
        if i in guards_at:
            for op, x, y, result in guards_at[i]:
                append(("guard", op, ref(x), ref(y), result))
    returns = [ref(o) for o in outs]
    program = _fuse_masks(program, returns)
    n_ops = sum(1 for ins in program if ins[0] == "op")
    if batched:
        program = fuse_chunked_maps(program)
        header = (
            f"def compiled(leaves):  # jit: {len(inputs)} inputs, {n_ops} operations "
            f"({len(batched)} over the batch), {len(seen_guards)} guards"
        )
        run, source = compile_batched(
            program,
            returns,
            len(inputs),
            # (arrays among the inputs too: jit's array arguments, which vmap maps over whole)
            batched | {f"x{k}" for k, node in enumerate(inputs) if _is_array(node.value)},
            header,
            MASK,
            GuardFailed,
            safe_name(fname),
            not any(_is_array(node.value) for node in inputs),
        )
        return run, source, len(seen_guards)
    if n_ops <= max_compiled_ops:
        program, returns = _reuse_names(program, returns)
    em = Emitter()
    header = (
        f"def compiled(leaves):  # jit: {len(inputs)} inputs, {n_ops} operations, {len(seen_guards)} guards"
    )
    pieces = pieces_of(program, [statement(ins, em) for ins in program], returns, len(inputs), header, em)
    if n_ops > max_compiled_ops:
        return _table(program, returns, len(inputs)), "\n".join(pieces), len(seen_guards)
    em.namespace["K"] = tuple(em.consts)
    for piece in pieces:  # one compile() per piece: CPython's compiler holds one piece at a time
        exec(compile(piece, f"<fgrad.jit {safe_name(fname)}>", "exec"), em.namespace)  # noqa: S102
    return em.namespace["compiled"], "\n".join(pieces), len(seen_guards)


def _fuse_masks(program: list[tuple[Any, ...]], returns: list[Ref]) -> list[tuple[Any, ...]]:
    """Replace ``s = step(x); y = a * s`` by ``y = mask(a, x)`` where ``s``
    has no other use."""
    uses: dict[str, int] = {}
    steps: dict[str, Ref] = {}
    for ins in program:
        refs = ins[3] if ins[0] == "op" else ins[2:4]
        for r in refs:
            if r[0] == "var":
                uses[r[1]] = uses.get(r[1], 0) + 1
        if ins[0] == "op" and ins[2] is arith.step:
            steps[ins[1]] = ins[3][0]
    for r in returns:
        if r[0] == "var":
            uses[r[1]] = uses.get(r[1], 0) + 1
    fused: set[str] = set()
    out: list[tuple[Any, ...]] = []
    for ins in program:
        if ins[0] == "op" and ins[2] is arith.mul:
            a, b = ins[3]
            for s, other in ((b, a), (a, b)):
                if s[0] == "var" and s[1] in steps and uses[s[1]] == 1:
                    fused.add(s[1])
                    ins = ("op", ins[1], MASK, (other, steps[s[1]]))
                    break
        out.append(ins)
    return [ins for ins in out if not (ins[0] == "op" and ins[1] in fused)]


def _reuse_names(
    program: list[tuple[Any, ...]], returns: list[Ref]
) -> tuple[list[tuple[Any, ...]], list[Ref]]:
    """Rename ``v<i>`` variables to registers ``r<k>`` reused after their
    last use: a function with one local per node allocates and clears a
    huge frame on every call (measured on the binary-style moons step,
    131,551 operations: 6.8 ms -> 4.7 ms per step)."""
    last: dict[str, int] = {}
    for k, ins in enumerate(program):
        for r in ins[3] if ins[0] == "op" else ins[2:4]:
            if r[0] == "var":
                last[r[1]] = k
    for r in returns:
        if r[0] == "var":
            last[r[1]] = len(program)
    names: dict[str, str] = {}
    free: list[str] = []
    out: list[tuple[Any, ...]] = []

    def rename(r: Ref) -> Ref:
        return ("var", names.get(r[1], r[1])) if r[0] == "var" else r

    for k, ins in enumerate(program):
        if ins[0] == "guard":
            out.append((ins[0], ins[1], rename(ins[2]), rename(ins[3]), ins[4]))
            used: tuple[Ref, ...] = (ins[2], ins[3])
        else:
            _, var, prim, args = ins
            new_args = tuple(rename(a) for a in args)
            used = args
        for r in used:  # registers whose value is not needed after this line
            if r[0] == "var" and r[1] in names and last.get(r[1]) == k:
                free.append(names.pop(r[1]))
                last.pop(r[1])
        if ins[0] == "op":
            if var not in last:  # computed but never used (kept for a guard)
                last[var] = k
            names[var] = free.pop() if free else f"r{len(names) + len(free)}"
            out.append(("op", names[var], prim, new_args))
    return out, [rename(r) for r in returns]


def _const_key(x: Any) -> Any:
    """Constants equal for CSE: floats by their bits (0.0 and -0.0, nans of
    other payloads differ), ints by value, others by identity."""
    if type(x) is float:
        return (float, _DOUBLE.pack(x))
    return (int, x) if type(x) is int else ("id", id(x))


_DOUBLE = struct.Struct("<d")
