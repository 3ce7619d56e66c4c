"""A jitted call taken apart: its cache key, its traced leaves and their layout.

The static arguments (``static_argnums``) and keyword arguments key the
cache as they are; the others are flattened into leaves (floats, and 1-D
numpy arrays), whose structure keys the cache too. The layout (the
structure, the static positions, the arrays' positions and kinds) says how
to put the call back together from leaves (:func:`arguments_from`).

This runs on every call, so it remembers what makes the next call cheap:
compiled flatteners of the structures met, the static positions per number
of arguments, the keys of recent structures, and the last call's key, which
a call with the very same static objects reuses without hashing them again.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from fgrad.compilers.jit.edges import as_floats, unhashable_field
from fgrad.compilers.jit.keys import Key, key_of
from fgrad.compilers.treegen import FlattenCache
from fgrad.engine.tree import TreeDef, tree_flatten, tree_unflatten, treedef_key

__all__ = ["CallSplitter", "Layout", "arguments_from", "check_call", "name_of", "signature"]

# The traced arguments' structure, the static arguments' positions, and the
# positions, lengths and dtypes of the numpy arrays among the leaves.
Layout = tuple[TreeDef, tuple[int, ...], tuple[tuple[int, int, str], ...]]


class CallSplitter:
    """Splits the calls of one jitted function (see the module)."""

    def __init__(self, fun: Callable[..., Any], static_argnums: tuple[int, ...]) -> None:
        self.fun = fun
        self.static_argnums = static_argnums
        self._flat = FlattenCache(per_key=4, max_keys=1)  # compiled flatteners of the arguments
        # The last call's structure, static objects and keyword items, and its key.
        self._last_key: tuple[TreeDef, tuple[Any, ...], tuple[Any, ...], Key] | None = None
        self._positions: dict[int, tuple[int, ...]] = {}  # number of arguments -> static positions
        self._td_keys: dict[int, tuple[TreeDef, Key]] = {}  # id(TreeDef) -> (it, its key), a few

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Key, list[Any], Layout]:
        """The call's key, its traced leaves and their layout."""
        n = len(args)
        static = self._positions.get(n)
        if static is None:
            static = self._static_positions(args, kwargs)
        dynamic = tuple(a for i, a in enumerate(args) if i not in static) if static else args
        fast = self._flat.flatten(None, dynamic)  # a structure met before: compiled code
        arrays: tuple[tuple[int, int, str], ...] = ()
        if fast is not None:
            leaves, td = fast
        else:
            leaves, td = tree_flatten(dynamic)
            self._flat.seen(None, td, leaves)
            if not set(map(type, leaves)) <= {float}:
                leaves, arrays = as_floats(leaves, td, static)
        statics = tuple(args[i] for i in static) if static else ()
        items = tuple(kwargs.items()) if kwargs else ()
        layout = (td, static, arrays)
        last = self._last_key
        if (
            last is not None
            and last[0] is td
            and not arrays
            and len(last[1]) == len(statics)
            and all(map(operator.is_, last[1], statics))
            and _same_items(last[2], items)
        ):
            # The same structure and the very same static objects as the last
            # call: the same key, without hashing a dataset again.
            return last[3], leaves, layout
        key = Key(
            (
                n,
                self._td_key(td, static),
                _static_key(static, statics, last),
                _kwargs_key(kwargs, items, last),
                arrays,
            )
        )
        if not arrays:
            self._last_key = (td, statics, items, key)
        return key, leaves, layout

    def prime(self, layout: Layout) -> None:
        """Compile the flattener of a structure just traced now (part of
        tracing and compiling, not of later calls)."""
        self._flat.prime(None, layout[0])

    def _static_positions(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
        """The positions of the static arguments in a call with these arguments."""
        n = len(args)
        out: list[int] = []
        for i in self.static_argnums:
            if not -n <= i < n:
                check_call(self.fun, args, kwargs, "")
                raise ValueError(
                    f"jit: static_argnums names argument {i} but the call has {n} positional "
                    "argument(s); pass it positionally (or drop it from static_argnums: keyword "
                    "arguments are static anyway)"
                )
            if i % n in out:
                raise ValueError(
                    f"jit: static_argnums {self.static_argnums} name argument {i % n} twice in a call "
                    f"with {n} arguments; list each argument once"
                )
            out.append(i % n)
        positions = tuple(sorted(out))
        if len(self._positions) < 64:
            self._positions[n] = positions
        return positions

    def _td_key(self, td: TreeDef, static: tuple[int, ...]) -> Key:
        hit = self._td_keys.get(id(td))
        if hit is not None and hit[0] is td:
            return hit[1]
        try:
            key = Key((treedef_key(td),))
        except Exception as e:  # noqa: BLE001 - a static field or dict key that cannot hash
            raise unhashable_field(td, static, e) from e
        if len(self._td_keys) >= 8:
            self._td_keys.clear()
        self._td_keys[id(td)] = (td, key)
        return key


def _static_key(static: tuple[int, ...], statics: tuple[Any, ...], last: Any) -> Key | None:
    if not statics:
        return None
    if last is not None and len(last[1]) == len(statics) and all(map(operator.is_, last[1], statics)):
        return last[3].parts[2]  # type: ignore[no-any-return]  # the same objects: their key
    return key_of(statics, [f"static argument {i}" for i in static], "static arguments key the cache")


def _kwargs_key(kwargs: dict[str, Any], given: tuple[Any, ...], last: Any) -> Key | None:
    if not kwargs:
        return None
    if last is not None and _same_items(last[2], given):
        return last[3].parts[3]  # type: ignore[no-any-return]  # the same objects: their key
    items = tuple(sorted(kwargs.items()))
    names = [f"keyword argument {name!r}" for name, _ in items]
    return key_of(items, names, "keyword arguments are static: they key the cache")


def _same_items(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Keyword arguments with the same names, in order, and the very same values."""
    return len(a) == len(b) and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a, b))


def arguments_from(args: tuple[Any, ...], leaves: list[Any], layout: Layout) -> list[Any]:
    """The call's arguments with the traced ones rebuilt from ``leaves``."""
    td, static, _ = layout
    dynamic = iter(tree_unflatten(td, leaves))
    return [a if i in static else next(dynamic) for i, a in enumerate(args)]


def check_call(fun: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], method: str) -> None:
    """A TypeError naming the problem if ``fun`` cannot take these arguments
    (``method``: ``""`` for a call, else the method called)."""
    sig = signature(fun)
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        name = name_of(fun)
        what = (
            f"jit({name}){method} takes the arguments of a call of {name} (and shows the code that call runs)"
            if method
            else f"jit({name}) was called with arguments that {name} does not take"
        )
        raise TypeError(f"{what}: {e}") from None


def name_of(f: Any) -> str:
    name = getattr(f, "__name__", None)
    return name if isinstance(name, str) else type(f).__name__


def signature(f: Callable[..., Any], follow_wrapped: bool = True) -> inspect.Signature | None:
    try:
        return inspect.signature(f, follow_wrapped=follow_wrapped)
    except (TypeError, ValueError):  # a builtin or an object without one
        return None
