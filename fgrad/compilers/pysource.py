"""jit's straight-line Python source: one statement per instruction, the
names and constants it may contain, and the cut of a large program into
pieces that CPython compiles one at a time.

What reaches the source: identifiers made here (``x0``, ``r12``, ``f3``,
``K[0]``, ``piece2``), ``repr`` of finite floats and of ints up to 2**63, never a
user string.
"""

from __future__ import annotations

import builtins
import math
import operator
import sys
from collections.abc import Iterable
from typing import Any

from fgrad.compilers.codetable import GuardFailed
from fgrad.engine.core import Primitive
from fgrad.primitives import arith, ops

__all__ = ["PIECE_TERMS", "Emitter", "pieces_of", "statement", "MASK", "Ref", "safe_name"]

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


class Emitter:
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


def _mask_impl(a: Any, x: Any) -> Any:
    return a * 1.0 if x > 0 else a * 0.0


# a * step(x) as one operation, without the call of step: the same
# multiplication by 1.0 or 0.0. The reverse pass of every relu.
MASK = Primitive(
    "mask",
    impl=_mask_impl,
    doc="``mask(a, x)``: ``a * 1.0`` where ``x > 0``, else ``a * 0.0`` (``a * step(x)``); jit's, no rules.",
)


# Programs of more terms than this are compiled as pieces: a function per
# piece of about this many terms, and one that calls them in turn, passing
# the registers live across each boundary. CPython's compiler holds a whole
# source's syntax tree while it compiles (several hundred bytes a term), so a
# program of 10^6 terms handed over whole took gigabytes. Measured on the
# scalar jit of the 2-64-64-1 moons loss over 100 examples (about 2.7 million
# terms): peak memory 2,040 -> 684 MB, the step 34.5 vs 34.3 ms (medians of
# three alternating runs); pieces of 100,000 terms took 678 MB but cost about
# 10% a step in the live registers passed across the more boundaries.
PIECE_TERMS = 150_000


def pieces_of(
    program: list[tuple[Any, ...]],
    lines: list[str],
    returns: list[Ref],
    n_inputs: int,
    header: str,
    em: Emitter,
) -> list[str]:
    """The program's source, as one function or as pieces (see PIECE_TERMS)."""

    def text(r: Ref) -> str:
        return r[1] if r[0] == "var" else em.const(r[1])

    unpack = [f"    {', '.join(f'x{k}' for k in range(n_inputs))}, = leaves"] if n_inputs else []
    ret = f"    return ({''.join(text(r) + ', ' for r in returns)})"
    sizes = [len(ins[3]) + 1 if ins[0] == "op" else 3 for ins in program]
    if sum(sizes) <= PIECE_TERMS:
        return ["\n".join([header, *unpack, *lines, ret]) + "\n"]
    bounds, start, acc = [], 0, 0
    for k, size in enumerate(sizes):
        acc += size
        if acc >= PIECE_TERMS or k == len(sizes) - 1:
            bounds.append((start, k + 1))
            start, acc = k + 1, 0
    live = {r[1] for r in returns if r[0] == "var"}  # registers read after the piece
    outs: list[list[str]] = []
    for a, b in reversed(bounds):  # liveness, backwards over the pieces
        written = {ins[1] for ins in program[a:b] if ins[0] == "op"}
        outs.append(sorted(written & live))
        live = (live - written) | _reads_first(program[a:b])
    outs.reverse()
    pieces, calls = [], []
    for j, (a, b) in enumerate(bounds):
        params = sorted(_reads_first(program[a:b]))
        back = "".join(v + ", " for v in outs[j])
        pieces.append(
            "\n".join([f"def piece{j}({', '.join(params)}):", *lines[a:b], f"    return ({back})"]) + "\n"
        )
        call = f"piece{j}({', '.join(params)})"
        calls.append(f"    {back} = {call}" if back else f"    {call}")
    return ["\n".join([header, *unpack, *calls, ret]) + "\n", *pieces]  # (the caller first, to read)


def _reads_first(program: list[tuple[Any, ...]]) -> set[str]:
    """The registers a piece of a program reads before it writes them."""
    written: set[str] = set()
    out: set[str] = set()
    for ins in program:
        for r in ins[3] if ins[0] == "op" else ins[2:4]:
            if r[0] == "var" and r[1] not in written:
                out.add(r[1])
        if ins[0] == "op":
            written.add(ins[1])
    return out


def statement(ins: tuple[Any, ...], em: Emitter) -> str:
    """One line of source (indented) for one instruction."""

    def text(r: Ref) -> str:
        return r[1] if r[0] == "var" else em.const(r[1])

    if ins[0] == "guard":
        _, op, a, b, result = ins
        return f"    if {'not ' if result else ''}({text(a)} {op} {text(b)}): raise GUARD"
    _, var, prim, args = ins
    texts = [text(a) for a in args]
    if prim in _INLINE:
        expr = f"{texts[0]} {_INLINE[prim]} {texts[1]}"
    elif prim in _TEMPLATES and (args[0][0] == "var" or type(args[0][1]) is float):
        expr = _TEMPLATES[prim].format(texts[0])
    elif prim is MASK:
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
    return f"    {var} = {expr}  # {_op_label(prim)}"


def _dot(ws: Iterable[Any], xs: Iterable[Any], start: Any) -> Any:
    """A dot's impl, minus its argument slicing: ``builtins.sum`` over ``map(mul)``."""
    return builtins.sum(map(operator.mul, ws, xs), start)


_OWN_PRIMITIVES = {id(p) for p in (*ops.PRIMITIVES.values(), MASK)}


def _op_label(prim: Primitive) -> str:
    """The comment naming an operation: fgrad's own primitives by name; a
    user's primitive as ``op`` (its name is a user string: none reaches the
    source, not even a comment)."""
    return prim.name if id(prim) in _OWN_PRIMITIVES else "op"


def safe_name(name: str) -> str:
    """A user's name for a comment, if it is a plain identifier: a newline in
    it would end the comment and inject a statement."""
    return name if isinstance(name, str) and name.isidentifier() else "<unnamed>"
