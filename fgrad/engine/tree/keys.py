"""Telling keys and structures apart: the order dict keys flatten in, and
:func:`treedef_key`, a strict key for a structure."""

from __future__ import annotations

import dataclasses
import numbers
import struct
from collections import Counter
from collections.abc import Collection, Hashable
from decimal import Decimal
from typing import Any, cast

from pyrsistent import PMap, PVector

from fgrad.engine.tree.shape import (
    _DATACLASS,
    _LEAF,
    _MAP,
    TreeDef,
    _check_treedef,
    _child_labels,
    _Leaves,
    _safe_repr,
    _type_name,
)

__all__ = ["treedef_key", "TreeKey"]

# Key order --------------------------------------------------------------------

_STR = frozenset({str})
_REALS = frozenset({int, float, bool})


def _sorted_keys(keys: Collection[Any]) -> tuple[Any, ...]:
    """Dict keys in a total order that depends only on the keys themselves
    (never on insertion or hash order), so that a dict and a PMap with the
    same keys flatten alike: by value when they are all strings or all real
    numbers, else by :func:`_canonical` (type rank, then value or repr)."""
    try:
        items = sorted(keys)
        if _STR.issuperset(map(type, items)) or (
            _REALS.issuperset(map(type, items)) and all(k == k for k in items)  # (no NaN)
        ):
            return tuple(items)
    except Exception:  # noqa: BLE001 - keys that do not compare (or compare badly): the order below
        pass
    return tuple(sorted(keys, key=lambda k: (_canonical(k), id(k))))  # (id: for keys alike in all else)


def _canonical(k: Any, depth: int = 0) -> tuple[Any, ...]:
    """A totally ordered stand-in for a key: keys of different types never
    compare with each other, only their ranks do."""
    t = type(k)
    if k is None:
        return (0,)
    if t is int or t is bool or t is float:
        return (1, 0, k) if k == k else (1, 1, 0)
    if t is str:
        return (2, k)
    if t is bytes:
        return (3, k)
    if depth < 20 and t is tuple:
        return (4, tuple(_canonical(e, depth + 1) for e in k))
    if depth < 20 and t is frozenset:
        return (5, tuple(sorted(_canonical(e, depth + 1) for e in k)))
    try:
        h = hash(k)  # consistent with equality: splits unequal keys that print alike
    except Exception:  # noqa: BLE001 - a key whose __hash__ changed its mind
        h = 0
    return (6, str(getattr(t, "__module__", "")), t.__qualname__, _safe_repr(k), h)


# A strict, flat key ---------------------------------------------------------


class TreeKey:
    """What :func:`treedef_key` returns: a flat tuple of tokens with its hash
    computed once (a cache lookup hashes it in constant time)."""

    __slots__ = ("tokens", "_hash")

    def __init__(self, tokens: tuple[Hashable, ...]) -> None:
        self.tokens = tokens
        self._hash = hash(tokens)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not TreeKey or self._hash != other._hash:
            return False
        return self.tokens == other.tokens

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"TreeKey({len(self.tokens)} tokens)"


# treedef_key's memo of the TreeDefs met last (jit meets the same one on every
# call), bounded in entries and in tokens (a TreeDef's size).
_KEYS_KEPT = 64
_KEY_TOKENS_KEPT = 1_000_000
_key_memo: dict[int, tuple[TreeDef, TreeKey]] = {}
_key_memo_tokens = 0


def treedef_key(treedef: TreeDef) -> TreeKey:
    """A hashable key for a structure, equal for two TreeDefs only if they are
    indistinguishable: where ``==`` takes ``1``, ``1.0`` and ``True`` for one
    static value (and ``0.0`` for ``-0.0``), the key compares dict keys and
    static values with their types, floats (and complex numbers, numpy
    scalars) by their bits, a Decimal by its text, and tuples, frozensets,
    PVectors, PMaps and dataclasses element by element in the same way;
    other values by type and ``==``. Container types compare exactly (a dict
    and a PMap differ). The key is flat (one tuple of tokens, whatever the
    depth of the structure) and computed without recursion, so it serves any
    depth. The TreeDefs met last are remembered (by identity), so keying the
    same TreeDef again costs a dict lookup.

    Args:
        treedef: a structure from :func:`tree_flatten`.

    Returns:
        A hashable :class:`TreeKey` (a cache key, e.g. jit's).

    Raises:
        TypeError: a static value (or a key) is unhashable; the message names
            the field and its path.

    >>> from fgrad.engine.tree import static_field, tree_structure
    >>> treedef_key(tree_structure({"a": 1.0})) == treedef_key(tree_structure({"a": 2.0}))
    True
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Flag:
    ...     on: object = static_field()
    >>> tree_structure(Flag(1)) == tree_structure(Flag(True))
    True
    >>> treedef_key(tree_structure(Flag(1))) == treedef_key(tree_structure(Flag(True)))
    False
    """
    _check_treedef("treedef_key", "treedef", treedef)
    hit = _key_memo.get(id(treedef))
    if hit is not None and hit[0] is treedef:
        return hit[1]
    tokens: list[Hashable] = []
    stack: list[TreeDef] = [treedef]
    while stack:
        td = stack.pop()
        kind = td.kind
        if kind == _LEAF:
            tokens.append(_LEAF)
            continue
        tokens += (kind, td.node_type, len(td.children))
        try:
            hash(td.node_type)
            if kind == _MAP:
                for k in td.meta:
                    _value_tokens(k, tokens)
            elif kind == _DATACLASS:
                names, static, values = td.meta
                tokens += (names, static)
                for v in values:
                    _value_tokens(v, tokens)
        except TypeError as e:
            raise TypeError(f"treedef_key: {_key_error(treedef, td, e)}") from None
        except RecursionError:
            where = _path_to(treedef, td)
            raise TypeError(f"treedef_key: a static value or key at {where} nests too deep") from None
        if type(td.children) is _Leaves:
            tokens += [_LEAF] * len(td.children)
        else:
            stack.extend(reversed(td.children))
    key = TreeKey(tuple(tokens))
    global _key_memo_tokens
    if len(_key_memo) >= _KEYS_KEPT or _key_memo_tokens + len(tokens) > _KEY_TOKENS_KEPT:
        _key_memo.clear()
        _key_memo_tokens = 0
    if len(tokens) <= _KEY_TOKENS_KEPT:
        _key_memo[id(treedef)] = (treedef, key)
        _key_memo_tokens += len(tokens)
    return key


_bits = struct.Struct("<d").pack
# Tuples and frozensets compared as their elements are (namedtuples too), not
# subclasses with an == of their own.
_TUPLE_EQ: Any = tuple.__eq__
_FROZENSET_EQ: Any = frozenset.__eq__
_KNOWN = (float, complex, tuple, frozenset, int, str, Decimal, PVector, PMap, type(None))
_SKIP = object()  # in place of a dataclass field left to the dataclass's own ==


_MAX_HELD_DEPTH = 8
# How many held TreeDefs treedef_key is inside (see _value_tokens). Shared by
# threads: one thread's count can only send another's held structure down the
# tuple walk, whose tokens differ from a key's: a cache miss, never a false hit.
_held_depth = [0]


def _value_tokens(v: Any, out: list[Hashable]) -> None:
    """Append a self-delimiting, strict encoding of a key or static value:
    numbers with their types (floats and complex numbers by their bits,
    numpy scalars by their bytes, a Decimal by its text), tuples, PVectors
    and a dataclass's compared fields element by element, frozensets and
    PMaps as multisets of their elements' encodings; anything else as
    itself with its type (hashed here, so that an error can name it)."""
    todo = [v]
    while todo:
        v = todo.pop()
        t = type(v)
        if v is _SKIP:
            out.append(v)
        elif t is TreeDef and _held_depth[0] < _MAX_HELD_DEPTH:
            # A structure held as a static value (an optimiser state keeps its
            # params'): its own key, remembered by identity, so that keying a
            # new state around the same structure does not walk it again.
            # (Structures held inside held structures, deeper than a few
            # levels, are walked as the tuples they are: no recursion.)
            _held_depth[0] += 1
            try:
                out.append(("treedef", treedef_key(v)))
            finally:
                _held_depth[0] -= 1
        elif t is str:
            out.append(v)  # (the only bare token at a value's place: equal only to the same text)
        elif isinstance(v, float):
            out.append((t, _bits(v)))
        elif t is int or t is bool or v is None:
            out.append((t, v))
        elif isinstance(v, complex):
            out.append((t, _bits(v.real), _bits(v.imag)))
        elif (isinstance(v, tuple) and t.__eq__ is _TUPLE_EQ) or isinstance(v, PVector):
            out.append(("seq", t, len(v)))
            todo.extend(reversed(v))
        elif (isinstance(v, frozenset) and t.__eq__ is _FROZENSET_EQ) or isinstance(v, PMap):
            parts: Counter[tuple[Hashable, ...]] = Counter()
            for e in v.items() if isinstance(v, PMap) else v:
                part: list[Hashable] = []
                _value_tokens(e, part)
                parts[tuple(part)] += 1  # (with multiplicities: two NaNs of the same bits)
            out.append(("set", t, frozenset(parts.items())))
        elif t is Decimal:
            out.append((t, str(v)))  # Decimal("0.0") == Decimal("-0.0") == Decimal("0.00")
        elif t.__module__ == "numpy" and isinstance(v, numbers.Number):
            out.append((t, cast(Any, v).tobytes()))  # numpy.float32(0.0) == numpy.float32(-0.0)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            hash(v)
            fields = [getattr(v, f.name) for f in dataclasses.fields(v) if f.compare]
            out.append(("obj", t, v, len(fields)))
            todo.extend(
                reversed(
                    [f if isinstance(f, _KNOWN) or dataclasses.is_dataclass(f) else _SKIP for f in fields]
                )
            )
        else:
            hash(v)
            out.append((t, v))


def _key_error(root: TreeDef, td: TreeDef, e: Exception) -> str:
    where = _path_to(root, td)
    if td.kind == _DATACLASS:
        for name, value in zip(td.meta[1], td.meta[2]):
            try:
                _value_tokens(value, [])
            except TypeError:
                return (
                    f"the static field {name!r} of the {_type_name(td)} at {where} holds an unhashable "
                    f"{type(value).__name__} ({e}); static values must be hashable: pass a tuple for a list, "
                    "or make the value a leaf"
                )
    return f"the {_type_name(td)} at {where} is unhashable ({e})"


def _path_to(root: TreeDef, node: TreeDef) -> str:
    """The path of ``node`` (found by identity) inside ``root``."""
    stack: list[tuple[TreeDef, str]] = [(root, "")]
    while stack:
        td, path = stack.pop()
        if td is node:
            return path or "the root"
        stack.extend((c, path + lab) for c, lab in zip(td.children, _child_labels(td)) if c.kind != _LEAF)
    return "?"  # pragma: no cover - node is always inside root
