"""jit's cache keys: strict, hashed once.

Python's ``==`` says ``0.0 == -0.0`` and ``1 == 1.0 == True``, and hashes
them alike; a function may still tell them apart (``1 / s``, ``flag is
True``, ``type(k)``, ``math.copysign(1, s)``). A value's strict key is a flat
tuple in which every number carries its type and every float its bits (a
nan's payload too), built by an iterative walk, so a value of any depth is
keyed without recursion.
"""

from __future__ import annotations

import dataclasses
import numbers
import struct
from collections import Counter
from decimal import Decimal
from typing import Any, cast

from pyrsistent import PMap, PVector

__all__ = ["Key", "strict_key", "key_of"]


class Key:
    """A cache key hashed once: static data (a dataset passed as a tuple)
    can take longer to hash than the compiled step takes to run, and a call
    looks the key up several times. Keys nest (a call's key holds the keys of
    its structure and of its static values, each hashed once)."""

    __slots__ = ("parts", "hash")

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self.hash = hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Key and self.hash == other.hash and self.parts == other.parts)


_bits = struct.Struct("<d").pack
# Containers whose == is their elements' (namedtuples), not a subclass's own.
_TUPLE_EQ: Any = tuple.__eq__
_FROZENSET_EQ: Any = frozenset.__eq__
_KNOWN = (float, complex, tuple, frozenset, int, str, Decimal, PVector, PMap, type(None))


class _Mark:
    """A place in a key being built: where a set's elements start and part,
    a set's end (holding its type), a tag. Never a user's value."""

    __slots__ = ("t",)

    def __init__(self, t: Any = None) -> None:
        self.t = t


_OPEN, _NEXT, _SKIP, _SEQ, _SET, _OBJ = (_Mark() for _ in range(6))


def strict_key(x: Any) -> tuple[Any, ...]:
    """The strict key of a hashable value: equal only for values that a
    function cannot tell apart by type or bits, inside tuples (namedtuples),
    frozensets, pyrsistent containers and dataclasses too. Other objects
    enter as themselves, compared by their own ``==``.

    >>> strict_key(0.0) == strict_key(-0.0), strict_key((1,)) == strict_key((True,))
    (False, False)
    >>> strict_key(("a", 2.5)) == strict_key(("a", 2.5))
    True
    """
    out: list[Any] = []
    todo: list[Any] = [x]
    frames: list[tuple[list[Any], list[tuple[Any, ...]]]] = []
    while todo:
        x = todo.pop()
        t = type(x)
        if t is float:
            out.append(x if x and x == x else (t, _bits(x)))  # equal nonzero floats have equal bits
        elif t is str:
            out.append(x)
        elif t is int or t is bool or x is None:
            out.append((t, x))
        elif (isinstance(x, tuple) and t.__eq__ is _TUPLE_EQ) or isinstance(x, PVector):
            out.append((_SEQ, t, len(x)))
            todo.extend(reversed(x))
        elif t is _Mark:
            if x is _SKIP:
                out.append(x)
                continue
            if x is _OPEN:
                frames.append((out, []))
            else:
                frames[-1][1].append(tuple(out))  # an element done
                if x is not _NEXT:  # the last one: the mark holds the set's type
                    out, elems = frames.pop()
                    # With multiplicities: a set may hold two nans of the same bits.
                    out.append((_SET, x.t, frozenset(Counter(elems).items())))
                    continue
            out = []
        elif isinstance(x, float):
            out.append((t, _bits(x)))
        elif isinstance(x, complex):
            out.append((t, _bits(x.real), _bits(x.imag)))
        elif (isinstance(x, frozenset) and t.__eq__ is _FROZENSET_EQ) or isinstance(x, PMap):
            # Each element keyed apart, the keys in a set: order-free, as the set is.
            elems = list(x.items()) if isinstance(x, PMap) else list(x)
            todo.append(_Mark(t))
            for e in elems[1:]:
                todo += (e, _NEXT)
            todo += (elems[0], _OPEN) if elems else (_OPEN,)
        elif t is Decimal:
            out.append((t, str(x)))  # Decimal("0.0") == Decimal("-0.0") == Decimal("0.00")
        elif t.__module__ == "numpy" and isinstance(x, numbers.Number):
            out.append((t, cast(Any, x).tobytes()))  # numpy.float32(0.0) == numpy.float32(-0.0)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            # The object by its own ==, and its compared fields strictly where
            # they are values this walk knows (others are left to that ==).
            fields = [f for f in dataclasses.fields(x) if f.compare]
            out.append((_OBJ, t, x, len(fields)))
            for f in reversed(fields):
                v = getattr(x, f.name)
                todo.append(v if isinstance(v, _KNOWN) or dataclasses.is_dataclass(v) else _SKIP)
        else:
            out.append((t, x))
    return tuple(out)


def key_of(values: tuple[Any, ...], names: list[str], why: str) -> Key:
    """The strict key of ``values``, or a TypeError naming the one among
    them (``names``, in order) that cannot be hashed."""
    try:
        return Key(strict_key(values))
    except Exception as e:  # noqa: BLE001 - a user's __hash__ may raise anything
        for v, name in zip(values, names):
            check_hashable(v, name, why)
        raise unhashable("these values", why, e) from e


def check_hashable(value: Any, what: str, why: str) -> None:
    try:
        hash(strict_key(value))
    except Exception as e:  # noqa: BLE001 - a user's __hash__ may raise anything
        raise unhashable(what, why, e) from e


def unhashable(what: str, why: str, error: Exception) -> TypeError:
    return TypeError(
        f"jit: {what} must be hashable ({why}), but hashing it raised {type(error).__name__}: {error}; "
        "pass lists as tuples and dicts as pyrsistent pmaps, or pass the data as a traced argument"
    )
