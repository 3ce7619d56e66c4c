"""Comparisons and conversions of nodes, and jit's guards on them.

A node compares by its concrete value (``x > 0`` is a plain bool), so
Python control flow works on traced values. Under jit each such comparison
is recorded as a guard at jit's level (see ``fgrad.jit``), and turning a
traced value into a plain number (``float(x)``) is refused, since the
number would be frozen into the compiled code. Importing this module
installs the methods on :class:`Expr` (fgrad's ``__init__`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .core import Expr, Trace, Unbatchable, _is_array, _is_number, _peel

__all__ = ["TraceGuardError", "concrete"]


class TraceGuardError(TypeError):
    """A traced value was turned into a plain number where that is not allowed."""


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
    """The float under any levels of nodes; refused inside jit tracing."""
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



def _method(op: str) -> Callable[[Expr, Any], bool]:
    def compare(self: Expr, other: Any) -> bool:
        return _compare(op, self, other)

    return compare


_METHODS: dict[str, Callable[..., Any]] = {
    f"__{name}__": _method(op)
    for op, name in (("<", "lt"), ("<=", "le"), (">", "gt"), (">=", "ge"), ("==", "eq"), ("!=", "ne"))
}
_METHODS["__bool__"] = lambda self: _compare("!=", self, 0.0)
_METHODS["__float__"] = lambda self: float(concrete(self, "float()"))
_METHODS["__int__"] = lambda self: int(concrete(self, "int()"))
_METHODS["__format__"] = lambda self, spec: format(concrete(self, "format()"), spec)  # f"{x:.3f}"
for _name, _fn in _METHODS.items():
    setattr(Expr, _name, _fn)
