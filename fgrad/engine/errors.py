"""What fgrad says when it is misused: the messages of the engine's errors.

Each says what happened, where, and what to do instead. They are built only
when something has gone wrong, so they may take their time (inspecting a
signature, formatting a value safely). This module imports nothing of fgrad.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

__all__ = [
    "EscapedNodeError",
    "Unbatchable",
    "describe",
    "not_a_number",
    "array_argument",
    "impl_failed",
    "huge_int",
    "escaped",
    "mixed",
]


class EscapedNodeError(ValueError):
    """A node was used after the transform that created it had returned."""

    __module__ = "fgrad"  # its public home (fg.EscapedNodeError): tracebacks and pickles name it there


class Unbatchable(Exception):
    """An operation on a batch (a value that is a numpy array: vmap's numpy
    backend) that needs one example at a time: a Python comparison, or a
    primitive without a ``vectorized`` implementation. The engine raises it;
    vmap catches it and runs its loop instead."""


def escaped(trace: Any) -> EscapedNodeError:
    return EscapedNodeError(
        f"a node traced by {trace.name} (level {trace.level}) was used after "
        f"{trace.name} returned. Values computed inside a transform must leave it "
        "through its return value: return them from the function (use "
        "has_aux=True to return extra values from grad), or take fg.value_of(x) "
        "of the node to keep only its value."
    )


def mixed(t: Any, u: Any) -> EscapedNodeError:
    dead = u if not u.live else t
    if not dead.live:
        return escaped(dead)
    return EscapedNodeError(
        f"nodes of two different transforms at the same level ({t.name} and {u.name}) "
        "met in one operation: a node was carried from one transform's function into "
        "another's (another thread, or a stored node). Pass values in as arguments instead."
    )


def describe(x: Any) -> str:
    """``a str ('abc')``: a value's type and a short repr that cannot fail."""
    try:
        shown = repr(x)
    except Exception:  # noqa: BLE001 - a user object whose repr raises
        shown = "..."
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"a {type(x).__name__} ({shown})"


def not_a_number(name: str, value: Any) -> TypeError:
    return TypeError(
        f"primitive {name!r}: its impl returned {describe(value)}, not a number; an impl "
        "must return one real number (a float) for real-number inputs"
    )


def array_argument(name: str, a: Any) -> TypeError:
    return TypeError(
        f"{name}: an argument is a numpy array of shape {getattr(a, 'shape', '?')}; fgrad "
        "differentiates scalar code, so values are numbers. To apply a function to every "
        "entry of an array, map it with fg.vmap (under fg.jit, with numpy, the array runs "
        "as one batch); for a 0-d array pass float(a)."
    )


def impl_failed(prim: Any, values: Any, error: Exception) -> Exception:
    """Why ``prim.impl(*values)`` raised on plain values: a wrong number of
    arguments, or an argument that is not a number; else the error itself."""
    try:
        signature = inspect.signature(prim.impl)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*values)
        except TypeError:
            wanted = ", ".join(p for p in signature.parameters)
            return TypeError(
                f"{prim.name}: takes ({wanted}), got {len(values)} argument(s); pass one "
                "number (or traced value) per parameter"
            )
    for k, v in enumerate(values):
        if isinstance(v, int) and not _fits_a_float(v):
            return ValueError(f"{prim.name}: argument {k} is {huge_int(v)}")
        if not isinstance(v, numbers.Real) and type(v).__name__ != "Expr":
            return TypeError(
                f"{prim.name}: argument {k} is {describe(v)}, not a number; fgrad operations "
                "take real numbers (floats, ints) or traced values"
            )
    return error


def _fits_a_float(n: int) -> bool:
    try:
        float(n)
    except OverflowError:
        return False
    return True


def huge_int(n: Any) -> str:
    """The description of an int too large for a float, and the fix."""
    return (
        f"an int too large for a float ({len(str(abs(n)))} digits, beyond 1.8e308); fgrad computes "
        "in floats: pass a float (float('inf') if that is what you mean)"
    )
