"""Comparisons and conversions of nodes, and jit's guards on them.

A node compares by its concrete value (``x > 0`` is a plain bool), so
Python control flow works on traced values. Under jit each such comparison
is recorded as a guard at jit's level (see ``fgrad.compilers.jit``), and turning a
traced value into a plain number (``float(x)``) is refused, since the
number would be frozen into the compiled code. Importing this module
installs the methods on :class:`Expr` (fgrad's ``__init__`` does).
"""

from __future__ import annotations

import linecache
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from fgrad.engine import errors
from fgrad.engine.core import Expr, Unbatchable, _is_array, _is_number, _peel
from fgrad.engine.trace import Trace

__all__ = ["TraceGuardError", "concrete", "value_of"]


class TraceGuardError(TypeError):
    """A traced value was turned into a plain number where that is not allowed."""

    __module__ = "fgrad"  # its public home (fg.TraceGuardError)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _compare(op: str, x: Any, y: Any) -> bool:
    if not (type(y) is Expr or _is_number(y)):
        return NotImplemented  # type: ignore[no-any-return]
    a, b = _peel(x), _peel(y)
    try:
        result = bool(_COMPARE[op](a, b))
    except ValueError:
        if _is_array(a) or _is_array(b):  # vmap's numpy backend: one example at a time
            raise Unbatchable(f"a Python comparison ({op}) of a batched value") from None
        raise
    guarded = _guarding_trace(x) or _guarding_trace(y)
    if guarded is not None and guarded.guards is not None:
        # Record the operands as they are at the guarding trace's level, so
        # a comparison made under nested transforms guards on jit's values.
        guarded.guards.append((op, _at_level(x, guarded), _at_level(y, guarded), result))
    return result


def _guarding_trace(x: Any) -> Trace | None:
    while type(x) is Expr:
        if x.trace.guards is not None and x.trace.live:
            return x.trace
        x = x.value
    return None


def _at_level(x: Any, trace: Trace) -> Any:
    while type(x) is Expr and x.trace.level > trace.level:
        x = x.value
    return x


def concrete(x: Any, what: str = "the value") -> Any:
    """The number under any levels of nodes; refused inside jit tracing,
    where it would be frozen into the compiled code."""
    node = x
    while type(node) is Expr:
        if not node.trace.concrete_ok and node.trace.live:
            raise TraceGuardError(
                f"{what} of a traced value inside {node.trace.name}: jit compiles "
                "the function once and replays it on new inputs, so a plain "
                "number taken from a traced value would be frozen into the "
                "compiled code. Keep computing with fgrad operations, or mark "
                "the argument static with static_argnums, or call the function "
                "without jit."
            )
        node = node.value
    return node


def value_of(x: Any) -> Any:
    """The plain number a traced value holds, as a constant: no derivative
    flows through it. A number is returned as it is.

    Use it to print, log or store a value from inside a transform, or to use
    it deliberately as a constant (``fg.stop_gradient`` does that and keeps
    a node, which also works under jit). Under jit it is refused: the number
    would be frozen into the compiled code.

    >>> import fgrad as fg
    >>> fg.grad(lambda x: x * value_of(x))(3.0)   # d/dx (x * c) with c = 3
    3.0
    """
    return concrete(x, "fg.value_of()")


def _to_float(x: Expr, what: str) -> float:
    """``float(x)``/``complex(x)``: refused while any transform that traced
    ``x`` is open, since the number would silently carry no derivative."""
    node: Any = x
    while type(node) is Expr:
        if node.trace.live:
            if not node.trace.concrete_ok:
                concrete(x, what)  # jit's own message
            raise TraceGuardError(_dropped(node.trace.name, what))
        node = node.value
    return float(node)


def _dropped(transform: str, what: str) -> str:
    named = _math_call()
    if named is not None:
        fix = f"use {named[1]} instead of {named[0]}"
    else:
        fix = (
            "compute with fgrad's operations (fg.sin, fg.exp, fg.sqrt ... in place of "
            "math.sin, math.exp, math.sqrt ...)"
        )
    return (
        f"{what} of a traced value inside {transform} would drop its derivative (the float "
        f"carries none; math.* and numpy scalar functions call float()). To differentiate "
        f"through it, {fix}. To use the value as a constant on purpose, take fg.value_of(x) "
        "(or fg.stop_gradient(x), which also works under jit)."
    )


def _math_call() -> tuple[str, str] | None:
    """The ``math.NAME``/``np.NAME`` call in the user's code that converted a
    node, and the fgrad op of that name if there is one: a better hint."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame = frame.f_back
    if frame is None:
        return None
    text = _call_text(frame)
    fgrad = sys.modules.get("fgrad")  # the public names, without importing upwards
    for module, name in re.findall(r"\b(math|np|numpy)\.(\w+)\s*\(", text):
        ours = _ALIASES.get(name, name)
        if ours in getattr(fgrad, "__all__", ()):
            return f"{module}.{name}", f"fg.{ours}"
    return None


def _call_text(frame: Any) -> str:
    """The source of the expression the frame is executing (its line on
    Python 3.10, which has no column positions)."""
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno)
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return line
    pos = list(positions())[frame.f_lasti // 2]
    if pos[0] is None or pos[0] != pos[1] or pos[2] is None or pos[3] is None:
        return line
    return line.encode()[pos[2] : pos[3]].decode(errors="replace")  # columns count UTF-8 bytes


_ALIASES = {"fabs": "abs", "pow": "power", "fsum": "sum", "absolute": "abs"}


# numpy's ufuncs on a node: numpy calls ``node.__array_ufunc__`` for
# ``np.float32(2) * node`` (numpy scalars do not defer to other operands) and
# for ``np.exp(node)``. Arithmetic and comparisons with numpy scalars are the
# node's own operators; any other ufunc, or an array operand, is refused.
_UFUNC_OPERATORS = {
    "add": ("__add__", "__radd__"),
    "subtract": ("__sub__", "__rsub__"),
    "multiply": ("__mul__", "__rmul__"),
    "true_divide": ("__truediv__", "__rtruediv__"),
    "divide": ("__truediv__", "__rtruediv__"),
    "floor_divide": ("__floordiv__", "__rfloordiv__"),
    "remainder": ("__mod__", "__rmod__"),
    "power": ("__pow__", "__rpow__"),
    "greater": ("__gt__", "__lt__"),
    "less": ("__lt__", "__gt__"),
    "greater_equal": ("__ge__", "__le__"),
    "less_equal": ("__le__", "__ge__"),
    "equal": ("__eq__", "__eq__"),
    "not_equal": ("__ne__", "__ne__"),
}
_UFUNC_UNARY = {
    "negative": "__neg__",
    "positive": "__pos__",
    "absolute": "__abs__",
    "floor": "__floor__",
    "ceil": "__ceil__",
    "trunc": "__trunc__",
}


def _array_ufunc(self: Expr, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    name = getattr(ufunc, "__name__", "?")
    # (numpy may pass a numpy scalar as a 0-d array: it is that scalar)
    inputs = tuple(x[()] if _is_array(x) and x.shape == () else x for x in inputs)
    for x in inputs:
        if _is_array(x):
            raise errors.array_argument(f"numpy.{name}", x)
    if method == "__call__" and not kwargs:
        if len(inputs) == 2 and name in _UFUNC_OPERATORS:
            a, b = inputs
            forward, reflected = _UFUNC_OPERATORS[name]
            return getattr(a, forward)(b) if type(a) is Expr else getattr(b, reflected)(a)
        if len(inputs) == 1 and name in _UFUNC_UNARY:
            return getattr(self, _UFUNC_UNARY[name])()
    ours = {"absolute": "abs", "fabs": "abs", "arctan2": "arctan2"}.get(name, name)
    fgrad = sys.modules.get("fgrad")
    fix = f"use fg.{ours}" if ours in getattr(fgrad, "__all__", ()) else "use fgrad's operations"
    raise TypeError(
        f"numpy.{name} (ufunc method {method!r}) of a traced value: numpy computes on numbers, not on "
        f"fgrad's traced values; {fix} (they take floats and traced values alike)"
    )


def _method(op: str) -> Callable[[Expr, Any], bool]:
    def compare(self: Expr, other: Any) -> bool:
        return _compare(op, self, other)

    return compare


_METHODS: dict[str, Callable[..., Any]] = {
    f"__{name}__": _method(op)
    for op, name in (("<", "lt"), ("<=", "le"), (">", "gt"), (">=", "ge"), ("==", "eq"), ("!=", "ne"))
}
_METHODS["__array_ufunc__"] = _array_ufunc
_METHODS["__bool__"] = lambda self: _compare("!=", self, 0.0)
_METHODS["__float__"] = lambda self: _to_float(self, "float()")
_METHODS["__complex__"] = lambda self: complex(_to_float(self, "complex()"))
_METHODS["__int__"] = lambda self: int(concrete(self, "int()"))
_METHODS["__format__"] = lambda self, spec: format(concrete(self, "format()"), spec)  # f"{x:.3f}"
for _name, _fn in _METHODS.items():
    setattr(Expr, _name, _fn)
