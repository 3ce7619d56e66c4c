"""Which objects are containers, and how each is rebuilt.

The kind of a type (and how to rebuild its instances) is worked out once
and remembered while the type lives: the caches are keyed by ``id(type)``
and emptied by a weakref callback when the type dies (before its id can be
reused), so that classes made and dropped in a loop are freed, and a plain
dict lookup keeps the walks fast.
"""

from __future__ import annotations

import dataclasses
import operator
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyrsistent import (
    CheckedPMap,
    CheckedPVector,
    PBag,
    PClass,
    PDeque,
    PList,
    PMap,
    PRecord,
    PSet,
    PVector,
    plist,
    pmap,
    pvector,
)
from pyrsistent._pvector import python_pvector as _python_pvector

from fgrad.engine.tree.shape import _DATACLASS, _LEAF, _LIST, _MAP, _NAMEDTUPLE, _NONE, _TUPLE, _UNSUPPORTED

__all__ = ["static_field", "unsupported_container"]


_NoneType = type(None)


class _Refused(Exception):
    """A container flatten cannot take; the message has no path yet."""


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the tree's structure, not a leaf.

    Use it for sizes, activation names and other configuration that must not
    be differentiated. Static values are compared when structures are matched
    and must be hashable.

    >>> from dataclasses import dataclass
    >>> from fgrad.engine.tree import tree_leaves
    >>> @dataclass(frozen=True)
    ... class Scaled:
    ...     w: float
    ...     name: str = static_field(default="s")
    >>> tree_leaves(Scaled(2.0))
    [2.0]
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


# Per-type caches (weak) -------------------------------------------------------
# Keyed by id(type), each entry dropped by a weakref callback when its type
# dies (before the id can be reused), so that classes made and dropped in a
# loop are freed. A plain dict lookup keeps the walks fast.

_kinds: dict[int, str] = {}
_node_types: dict[int, Any] = {}  # where the node type is not the class itself (which it must not hold)
_dataclass_info: dict[int, tuple[tuple[str, ...], tuple[str, ...], Any, Any]] = {}
_type_refs: dict[int, weakref.ref[type]] = {}
_PER_INSTANCE = object()  # a node type made per instance (defaultdict, OrderedDict, checked types)


def _remember(t: type) -> None:
    i = id(t)
    if i not in _type_refs:
        _type_refs[i] = weakref.ref(t, lambda _, i=i: _forget(i))  # type: ignore[misc]


def _forget(i: int) -> None:
    for cache in (_type_refs, _kinds, _node_types, _dataclass_info):
        cache.pop(i, None)


def _classify(x: Any) -> str:
    """The kind of ``type(x)`` (and its node type), remembered while the type lives."""
    t = type(x)
    node_type: Any = None  # the class itself
    if t is _NoneType:
        kind = _NONE
    elif issubclass(t, tuple):
        kind = _NAMEDTUPLE if _is_namedtuple(t) else _TUPLE
        # A tuple subclass may name the type it flattens and rebuilds as
        # (vmap's lazy result is a Batched to pytrees).
        node_type = t.__dict__.get("__tree_type__")
    elif issubclass(t, list):
        kind = _LIST
    elif issubclass(t, dict):
        # Per instance: a dict is rebuilt in its own insertion order (its
        # leaves flatten in sorted key order), so that a function iterating
        # it sees under a transform what it sees on floats.
        kind, node_type = _MAP, _PER_INSTANCE
    elif t in _PLAIN_PVECTORS:
        kind, node_type = _LIST, PVector
    elif t is PMap:
        kind = _MAP
    elif issubclass(t, CheckedPVector):
        kind, node_type = _LIST, _PER_INSTANCE
    elif issubclass(t, (PRecord, CheckedPMap)):
        kind, node_type = _MAP, _PER_INSTANCE
    elif dataclasses.is_dataclass(t) and not getattr(t, "__tree_leaf__", False):
        kind = _DATACLASS
        _dataclass_fields(t)
    elif _unsupported(t) is not None:
        kind = _UNSUPPORTED
    else:
        kind = _LEAF
    _remember(t)
    if node_type is not None:
        _node_types[id(t)] = node_type
    _kinds[id(t)] = kind  # (last: a type is taken as known once its kind is)
    return kind


_kinds[id(float)] = _kinds[id(int)] = _LEAF
# pyrsistent's own unchecked path for a CheckedPVector takes a Python PVector.
python_pvector: Callable[[Iterable[Any]], Any] = _python_pvector
_PLAIN_PVECTORS = frozenset({type(pvector()), type(python_pvector(()))})


def _is_namedtuple(t: type) -> bool:
    fields = getattr(t, "_fields", None)
    return type(fields) is tuple and all(type(f) is str for f in fields)


def _dataclass_fields(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], Any, Any]:
    """(child field names, static field names, getter of the children, getter
    of the static values) of a dataclass type."""
    info = _dataclass_info.get(id(cls))
    if info is None:
        kids: list[str] = []
        static: list[str] = []
        for f in dataclasses.fields(cls):
            (static if f.metadata.get("static") else kids).append(f.name)
        info = (tuple(kids), tuple(static), _tuple_getter(tuple(kids)), _tuple_getter(tuple(static)))
        _remember(cls)
        _dataclass_info[id(cls)] = info
    return info


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Fetch several attributes as a tuple in one C call (attrgetter)."""
    if not names:
        return lambda x: ()
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else (lambda x: (get(x),))


# Containers fgrad does not take ------------------------------------------------

_SUPPORTED = (
    "pytree containers are None, tuples, namedtuples, lists, dicts, PMap, PVector, PRecord, "
    "CheckedPMap, CheckedPVector and dataclasses"
)
_EMPTY_PLIST: type = type(plist())


def unsupported_container(x: Any) -> str | None:
    """Why ``x`` cannot be part of a pytree, if it is a container fgrad refuses
    (rather than take it whole as one leaf, which would hide its elements from
    ``grad`` and ``tree_map``); None for anything else.

    Args:
        x: any value.

    Returns:
        An explanation saying what to use instead, or None.

    >>> from pyrsistent import pset
    >>> unsupported_container(pset([1.0])).split(";")[0]
    'a PSet is unordered, so its elements have no place in the flat list of leaves'
    >>> unsupported_container([1.0]) is None
    True
    """
    return _unsupported(type(x))


def _unsupported(t: type) -> str | None:
    name = t.__name__
    if issubclass(t, (PSet, PBag)):
        why = f"a {name} is unordered, so its elements have no place in the flat list of leaves"
        fix = "use a PVector or tuple of them, or a PMap keyed by them"
    elif issubclass(t, (PList, PDeque, _EMPTY_PLIST)):
        why = f"a {name} is not a pytree container"
        fix = "use a PVector (pvector(x)) or a list"
    elif issubclass(t, PClass):
        why = f"a {name} (a PClass) is not a pytree container"
        fix = "use a frozen dataclass (with static_field for what is not a leaf) or a PRecord"
    elif issubclass(t, (PMap, PVector)) and not issubclass(t, (PRecord, CheckedPMap, CheckedPVector)):
        if t is PMap or t in _PLAIN_PVECTORS:
            return None
        why = f"{name} is a subclass of PMap or PVector, which fgrad could not rebuild as itself"
        fix = "use PMap, PVector, PRecord, CheckedPMap or CheckedPVector"
    else:
        return None
    return f"{why}; {fix} ({_SUPPORTED})"


# Node types that rebuild what calling the class with the items would not ----


@dataclass(frozen=True)
class _Rebuild:
    """A TreeDef's ``node_type`` for a container that its class alone does
    not rebuild; hashable, and named after the class in reprs."""

    cls: Any

    @property
    def __name__(self) -> str:
        return str(self.cls.__name__)


@dataclass(frozen=True)
class _DefaultDict(_Rebuild):
    """A defaultdict (or subclass) with its factory."""

    factory: Any

    def __call__(self, items: dict[Any, Any]) -> Any:
        return self.cls(self.factory, items)


@dataclass(frozen=True)
class _Ordered(_Rebuild):
    """A dict (or subclass, OrderedDict too) whose order is not the sorted
    one: its keys' positions in the sorted order, in its order (dicts in other
    orders are unequal, so the order is part of the structure)."""

    order: tuple[int, ...]

    def __call__(self, items: dict[Any, Any]) -> Any:
        return self.cls(operator.itemgetter(*self.order)(list(items.items())))


@dataclass(frozen=True)
class _CheckedMap(_Rebuild):
    """A PRecord or CheckedPMap, rebuilt through pyrsistent's own unchecked
    constructor (its evolver's), as dataclasses skip ``__post_init__``."""

    def __call__(self, items: dict[Any, Any]) -> Any:
        m: Any = pmap(items)
        if issubclass(self.cls, PRecord):
            return self.cls(_precord_size=m._size, _precord_buckets=m._buckets)
        return self.cls(m._buckets, size=m._size)


@dataclass(frozen=True)
class _CheckedVector(_Rebuild):
    """A CheckedPVector, rebuilt unchecked (pyrsistent's own path for a plain
    Python PVector)."""

    def __call__(self, items: list[Any]) -> Any:
        return self.cls(python_pvector(items))


_KEEP_TYPE = (_CheckedMap, _CheckedVector)  # already persistent: kept in persistent results


def _instance_node_type(x: Any, keys: tuple[Any, ...]) -> Any:
    if type(x) is dict:  # the common case, first
        if tuple(x) == keys:
            return dict  # in sorted order already
        if _STRS.issuperset(map(type, keys)):  # (equal strs are interchangeable: safe to hash)
            where = dict(zip(keys, range(len(keys))))
            return _ordered(dict, tuple(map(where.__getitem__, x)))
    if isinstance(x, CheckedPVector):
        return _CheckedVector(type(x))
    if isinstance(x, (PRecord, CheckedPMap)):
        return _CheckedMap(type(x))
    if isinstance(x, defaultdict):
        return _DefaultDict(type(x), x.default_factory)
    where = {id(k): i for i, k in enumerate(keys)}  # (the very key objects: no __eq__ called)
    order = tuple(where.get(id(k), -1) for k in x.keys())
    if order == tuple(range(len(keys))):
        return type(x)  # in sorted order already
    if -1 in order or len(order) != len(keys):
        raise _Refused(f"the {type(x).__name__}'s keys() gave other keys on a second call")
    return _ordered(type(x), order)


_STRS = frozenset({str})
_ordered_made: dict[tuple[type, tuple[int, ...]], _Ordered] = {}


def _ordered(cls: type, order: tuple[int, ...]) -> _Ordered:
    """The node type of a dict in this order, made once (a dict met on every
    call of a step is in the same order every time)."""
    key = (cls, order)
    made = _ordered_made.get(key)
    if made is None:
        if len(_ordered_made) >= 256:
            _ordered_made.clear()
        made = _ordered_made[key] = _Ordered(cls, order)
    return made


class _BadTreeDef(Exception):
    """A TreeDef not made by tree_flatten, which does not add up."""


class _Unfaithful(Exception):
    """A subclass of dict or list whose constructor did not keep the items given."""


def _trusted(node_type: Any) -> bool:
    """Rebuilt by a constructor known to keep the items given."""
    if isinstance(node_type, _Rebuild):
        cls = node_type.cls
        return type(node_type) in _KEEP_TYPE or cls is dict or cls is OrderedDict or cls is defaultdict
    return node_type is OrderedDict


def _holds(obj: Any, items: Any) -> bool:
    """``obj`` reads back (as flatten reads it) as the very items it was built from."""
    try:
        if isinstance(items, dict):
            return len(obj) == len(items) and all(obj[k] is v for k, v in items.items())
        got = list(iter(obj))
        return len(got) == len(items) and all(map(operator.is_, got, items))
    except Exception:  # noqa: BLE001 - a container that cannot even be read back
        return False
