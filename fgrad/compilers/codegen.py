"""From a jit trace to a runnable program: straight-line source or a table.

One statement per needed node, in tape order (``v12 = v3 * v7``); shared
subexpressions computed once; operations that return an operand bit for bit
dropped; guards checked as soon as their operands exist. What reaches the
source: identifiers made here (``x0``, ``v12``, ``f3``, ``K[0]``), ``repr`` of
finite floats and ints, never a user string. Very large programs run as a
table of (function, registers) instead, as compiling them costs more than it
saves.
"""

from __future__ import annotations

import builtins
import math
import operator
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fgrad.compilers.codetable import GuardFailed, _table
from fgrad.compilers.numpycode import compile_batched
from fgrad.engine.core import Expr, Primitive, _is_array
from fgrad.engine.trace import Trace
from fgrad.primitives import arith, ops

__all__ = ["GuardFailed", "compile_trace"]

_INLINE = {arith.add: "+", arith.sub: "-", arith.mul: "*"}
# Expressions that compute exactly what the impl does, without a call.
_TEMPLATES_2 = {"mask": "({0} * 1.0 if {1} > 0 else {0} * 0.0)"}
_TEMPLATES = {
    ops.relu: "({0} if {0} > 0 else ({0} if {0} != {0} else 0.0))",
    arith.step: "(1.0 if {0} > 0 else 0.0)",
}


# Python 3.12 made sum() of floats compensated; inline sums only before it.
_PLAIN_SUM = sys.version_info < (3, 12)
_MAX_INLINE = 200


_MAX_INT_LITERAL = 2**63


class _Emitter:
    """Names for values: variables it made, float/int literals, or K[i]."""

    def __init__(self) -> None:
        self.consts: list[Any] = []
        self.funcs: dict[int, str] = {}
        self.namespace: dict[str, Any] = {
            "NAN": math.nan,
            "INF": math.inf,
            "GUARD": GuardFailed,
            "DIV": arith._div_impl,
            "DOT": _dot,
            "SUM": builtins.sum,
        }

    def const(self, x: Any) -> str:
        # Literals only where repr round-trips every bit: a nan's sign and
        # payload and an int of thousands of digits (repr refuses those)
        # stay objects, in K.
        if type(x) is float and math.isfinite(x):
            text = repr(x)
            return f"({text})" if text.startswith("-") else text
        if type(x) is int and -_MAX_INT_LITERAL <= x <= _MAX_INT_LITERAL:
            return f"({x!r})" if x < 0 else repr(x)
        self.consts.append(x)
        return f"K[{len(self.consts) - 1}]"

    def func(self, prim: Primitive) -> str:
        name = self.funcs.get(id(prim))
        if name is None:
            name = f"f{len(self.funcs)}"
            self.funcs[id(prim)] = name
            self.namespace[name] = prim.impl
        return name


# An instruction: ("op", target, prim, refs) or ("guard", op, ref_a, ref_b, result),
# where a ref is ("var", name) or ("const", value).
Ref = tuple[str, Any]


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
                if mine(a):
                    needed[a.seq] = 1

    refs: list[Ref | None] = [None] * len(tape)
    for k, node in enumerate(inputs):
        refs[node.seq] = ("var", f"x{k}")

    def ref(a: Any) -> Ref:
        if mine(a):
            r: Ref | None = refs[a.seq]
            assert r is not None
            return r
        return ("const", a)

    cse: dict[tuple[Any, ...], Ref] = {}
    program: list[tuple[Any, ...]] = []
    batched: set[str] = set()  # registers holding a batch (vmap's numpy backend)
    for i, node in enumerate(tape):
        prim = node.prim
        if not needed[i]:
            continue
        if prim is not None:
            args = tuple(ref(a) for a in node.args)
            # (No operation is dropped as returning an operand, not even x * 1:
            # it quiets a signaling nan, and eager code did it.)
            key = (id(prim), tuple((k, v if k == "var" else _const_key(v)) for k, v in args))
            if key not in cse:
                cse[key] = ("var", f"v{i}")
                program.append(("op", f"v{i}", prim, args))
                if _is_array(node.value):
                    batched.add(f"v{i}")
            refs[i] = cse[key]
        for op, x, y, result in guards_at.get(i, ()):
            program.append(("guard", op, ref(x), ref(y), result))
    returns = [ref(o) for o in outs]
    program = _fuse_masks(program, returns)
    n_ops = sum(1 for ins in program if ins[0] == "op")
    if batched:
        header = (
            f"def compiled(leaves):  # jit: {len(inputs)} inputs, {n_ops} operations "
            f"({len(batched)} over the batch), {len(seen_guards)} guards"
        )
        run, source = compile_batched(
            program, returns, len(inputs), batched, header, _MASK, GuardFailed, _safe_name(fname)
        )
        return run, source, len(seen_guards)
    if n_ops <= max_compiled_ops:
        program, returns = _reuse_names(program, returns)
    source = _source(program, returns, len(inputs), n_ops, len(seen_guards), fname)
    if n_ops > max_compiled_ops:
        run = _table(program, returns, len(inputs))
    else:
        em = _Emitter()
        code = _source(program, returns, len(inputs), n_ops, len(seen_guards), fname, em)
        em.namespace["K"] = tuple(em.consts)
        exec(compile(code, f"<fgrad.jit {_safe_name(fname)}>", "exec"), em.namespace)  # noqa: S102
        run = em.namespace["compiled"]
    return run, source, len(seen_guards)


def _mask_impl(a: Any, x: Any) -> Any:
    return a * 1.0 if x > 0 else a * 0.0


# a * step(x) as one operation, without the call of step: the same
# multiplication by 1.0 or 0.0. The reverse pass of every relu.
_MASK = Primitive(
    "mask",
    impl=_mask_impl,
    doc="``mask(a, x)``: ``a * 1.0`` where ``x > 0``, else ``a * 0.0`` (``a * step(x)``); jit's, no rules.",
)


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
                    ins = ("op", ins[1], _MASK, (other, steps[s[1]]))
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


def _source(
    program: list[tuple[Any, ...]],
    returns: list[Ref],
    n_inputs: int,
    n_ops: int,
    n_guards: int,
    fname: str,
    em: _Emitter | None = None,
) -> str:
    em = _Emitter() if em is None else em

    def text(r: Ref) -> str:
        return r[1] if r[0] == "var" else em.const(r[1])

    lines = [f"def compiled(leaves):  # jit: {n_inputs} inputs, {n_ops} operations, {n_guards} guards"]
    if n_inputs:
        lines.append(f"    {', '.join(f'x{k}' for k in range(n_inputs))}, = leaves")
    for ins in program:
        if ins[0] == "guard":
            _, op, a, b, result = ins
            lines.append(f"    if {'not ' if result else ''}({text(a)} {op} {text(b)}): raise GUARD")
            continue
        _, var, prim, args = ins
        texts = [text(a) for a in args]
        if prim in _INLINE:
            expr = f"{texts[0]} {_INLINE[prim]} {texts[1]}"
        elif prim in _TEMPLATES and (args[0][0] == "var" or type(args[0][1]) is float):
            expr = _TEMPLATES[prim].format(texts[0])
        elif prim is _MASK:
            expr = _TEMPLATES_2["mask"].format(*texts)
        elif prim is arith.neg:
            expr = f"-{texts[0]}"
        elif prim is arith.div:
            expr = f"DIV({texts[0]}, {texts[1]})"
        elif prim is arith.dot_p and len(texts) <= 2 * _MAX_INLINE + 1 and _PLAIN_SUM:
            # A dot as one expression: builtins.sum adds left to right in
            # plain double arithmetic before Python 3.12, so this is the
            # impl's exact result, twice as fast as the call (measured for
            # 4 to 100 terms). Longer ones keep the call: CPython's compiler
            # recurses on the depth of an expression.
            n = len(texts) // 2
            terms = [texts[-1] if len(texts) % 2 else "0.0"]
            terms += [f"{texts[i]} * {texts[n + i]}" for i in range(n)]
            expr = " + ".join(terms)
        elif prim is arith.dot_p:
            # The same builtins.sum over map(mul) as the impl, minus its
            # argument slicing: one C loop per dot.
            n = len(texts) // 2
            start = texts[-1] if len(texts) % 2 else "0.0"
            ws = "".join(t + ", " for t in texts[:n])
            xs = "".join(t + ", " for t in texts[n : 2 * n])
            expr = f"DOT(({ws}), ({xs}), {start})"
        elif prim is arith.sum_p and 1 < len(texts) <= _MAX_INLINE and _PLAIN_SUM:
            expr = " + ".join(texts)
        elif prim is arith.sum_p and texts:
            expr = f"SUM(({''.join(t + ', ' for t in texts[1:])}), {texts[0]})"
        else:
            expr = f"{em.func(prim)}({', '.join(texts)})"
        lines.append(f"    {var} = {expr}  # {_op_label(prim)}")
    lines.append(f"    return ({''.join(text(r) + ', ' for r in returns)})")
    return "\n".join(lines) + "\n"


def _dot(ws: tuple[Any, ...], xs: tuple[Any, ...], start: Any) -> Any:
    return builtins.sum(map(operator.mul, ws, xs), start)


def _const_key(x: Any) -> Any:
    """Constants equal for CSE: floats by their bits (0.0 and -0.0, nans of
    other payloads differ), ints by value, others by identity."""
    if type(x) is float:
        return (float, _DOUBLE.pack(x))
    return (int, x) if type(x) is int else ("id", id(x))


_DOUBLE = struct.Struct("<d")


_OWN_PRIMITIVES = {id(p) for p in (*ops.PRIMITIVES.values(), _MASK)}


def _op_label(prim: Primitive) -> str:
    """The comment naming an operation: fgrad's own primitives by name; a
    user's primitive as ``op`` (its name is a user string: none reaches the
    source, not even a comment)."""
    return prim.name if id(prim) in _OWN_PRIMITIVES else "op"


def _safe_name(name: str) -> str:
    """A user's name for a comment, if it is a plain identifier: a newline in
    it would end the comment and inject a statement."""
    return name if isinstance(name, str) and name.isidentifier() else "<unnamed>"
