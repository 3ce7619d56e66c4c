"""Pytrees: flatten nested containers to a list of leaves and back.

Containers are ``None``, tuples, namedtuples, lists, dicts, pyrsistent ``PMap``
and ``PVector`` (and the checked ``PRecord``, ``CheckedPMap`` and
``CheckedPVector``), and dataclasses (fields in declaration order; fields
marked with :func:`static_field` ride in the tree definition instead of being
leaves). Everything else is a leaf, as is a dataclass whose class sets
``__tree_leaf__ = True`` (fgrad's own ``Expr`` nodes do), except the other
pyrsistent containers (``PSet``, ``PBag``, ``PList``, ``PDeque``, ``PClass``),
which are refused with a TypeError (see :func:`unsupported_container`) rather
than taken whole as a leaf. Dict and PMap keys flatten in a sorted order that
never depends on insertion or hash order (see :func:`tree_flatten`).

A :class:`TreeDef` records the exact container types, so
``tree_unflatten(*reversed(tree_flatten(t)))`` rebuilds ``t`` as it was (an
OrderedDict in its order, a defaultdict with its factory). Results that fgrad
*produces* (gradients, ``tree_map``) are made persistent instead: dict and PMap
give PMap, list and PVector give PVector; a PRecord, CheckedPMap or
CheckedPVector keeps its type. Dataclasses and the checked pyrsistent types
are rebuilt without calling ``__init__``/``__post_init__`` and without their
field checks and invariants, so that a tree of gradients or of graph nodes
can take the shape of a validated model.

Trees may be nested to any depth (the walks hand over to an explicit stack
when Python's would run out); a tree that contains itself is refused.

This module imports nothing of fgrad.
"""

from __future__ import annotations

import dataclasses
import operator
import struct
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

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

__all__ = [
    "TreeDef",
    "static_field",
    "tree_flatten",
    "tree_unflatten",
    "tree_leaves",
    "tree_map",
    "tree_structure",
    "tree_paths",
    "structure_mismatch",
    "treedef_equal",
    "treedef_key",
    "unsupported_container",
]

# Container kinds. The kind is stored in the TreeDef instead of the type
# where two types share a layout (dict/PMap, list/PVector) so that
# ``structure_mismatch`` can treat them alike while unflatten still rebuilds
# the original type from ``TreeDef.node_type``.
_LEAF = "leaf"
_NONE = "none"
_TUPLE = "tuple"
_NAMEDTUPLE = "namedtuple"
_LIST = "list"
_MAP = "map"
_DATACLASS = "dataclass"
_UNSUPPORTED = "unsupported"  # never in a TreeDef: flatten refuses it


class TreeDef(NamedTuple):
    """The shape of a pytree: container types, keys, static fields; no leaves.

    TreeDefs are hashable and compare structurally, so they can key caches.
    ``==`` recurses in C and fails on very deep structures (and treats
    ``1``, ``1.0`` and ``True`` as the same static value): compare with
    :func:`treedef_equal` and key caches with :func:`treedef_key`.
    """

    kind: str
    node_type: Any  # the container's class (None for a leaf)
    meta: Any  # dict keys, dataclass field names and static values
    children: tuple[TreeDef, ...]
    num_leaves: int

    def __repr__(self) -> str:
        out: list[str] = []
        stack: list[Any] = [self]  # TreeDefs to write, and the text between them
        while stack:
            item = stack.pop()
            if type(item) is str:
                out.append(item)
            elif item.kind == _LEAF:
                out.append("*")
            else:
                out.append(_type_name(item) + "(")
                stack.append(")")
                kids = item.children
                if type(kids) is _Leaves:
                    out.append(", ".join(["*"] * len(kids)))
                    continue
                for i in range(len(kids) - 1, -1, -1):
                    stack.append(kids[i])
                    if i:
                        stack.append(", ")
        return "".join(out)


class _Leaves(tuple[TreeDef, ...]):
    """Children that are all leaves (a vector of numbers), marked by their
    type so that walks take them in one step. Equal to, and hashing like,
    the plain tuple of leaves."""

    __slots__ = ()


LEAF = TreeDef(_LEAF, None, None, (), 1)
_new_tuple = tuple.__new__
_NoneType = type(None)


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the tree's structure, not a leaf.

    Use it for sizes, activation names and other configuration that must not
    be differentiated. Static values are compared when structures are matched
    and must be hashable.

    >>> from dataclasses import dataclass
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


# Safe text for messages -------------------------------------------------------


def _safe_repr(x: Any, limit: int = 0) -> str:
    """repr(x) for a message or path, whatever x's ``__repr__`` does."""
    try:
        text = repr(x)
        if type(text) is not str:
            raise TypeError
    except Exception:  # noqa: BLE001 - a hostile or broken __repr__ must not hide the real error
        text = f"<{type(x).__name__} whose repr failed>"
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


def _type_name(td: TreeDef) -> str:
    name = getattr(td.node_type, "__name__", td.kind)
    return name if type(name) is str else td.kind


def _short(td: TreeDef) -> str:
    return _safe_repr(td, 200)


# Key order --------------------------------------------------------------------

_STR = frozenset({str})
_REALS = frozenset({int, float, bool})


def _sorted_keys(keys: Iterable[Any]) -> tuple[Any, ...]:
    """Dict keys in a total order that depends only on the keys themselves
    (never on insertion or hash order), so that a dict and a PMap with the
    same keys flatten alike: by value when they are all strings or all real
    numbers, else by :func:`_canonical` (type rank, then value or repr)."""
    items = list(keys)
    try:
        items.sort()
        if _STR.issuperset(map(type, items)) or (
            _REALS.issuperset(map(type, items)) and all(k == k for k in items)  # (no NaN)
        ):
            return tuple(items)
    except Exception:  # noqa: BLE001, S110 - keys that do not compare (or compare badly): the order below
        pass
    items.sort(key=lambda k: (_canonical(k), id(k)))  # (id: for keys alike in all else)
    return tuple(items)


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
    elif issubclass(t, list):
        kind = _LIST
    elif issubclass(t, dict):
        kind = _MAP
        if issubclass(t, (OrderedDict, defaultdict)):
            node_type = _PER_INSTANCE
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
    _kinds[id(t)] = kind
    if node_type is not None:
        _node_types[id(t)] = node_type
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
    """An OrderedDict (or subclass) whose order is not the sorted one: its
    keys' positions in the sorted order, in its order (OrderedDicts in other
    orders are unequal, so the order is part of the structure)."""

    order: tuple[int, ...]

    def __call__(self, items: dict[Any, Any]) -> Any:
        pairs = list(items.items())
        return self.cls([pairs[i] for i in self.order])


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
    if isinstance(x, CheckedPVector):
        return _CheckedVector(type(x))
    if isinstance(x, (PRecord, CheckedPMap)):
        return _CheckedMap(type(x))
    if isinstance(x, defaultdict):
        return _DefaultDict(type(x), x.default_factory)
    where = {id(k): i for i, k in enumerate(keys)}  # (the very key objects: no __eq__ called)
    order = tuple(where.get(id(k), -1) for k in x.keys())
    if order == tuple(range(len(keys))):
        return type(x)
    if -1 in order or len(order) != len(keys):
        raise _Refused(f"the {type(x).__name__}'s keys() gave other keys on a second call")
    return _Ordered(type(x), order)


# Flatten --------------------------------------------------------------------


class _Refused(Exception):
    """A container flatten cannot take; the message has no path yet."""


def _children(x: Any, kind: str) -> tuple[Any, list[Any]]:
    """(meta, children) of container ``x`` of the given kind."""
    try:
        if kind == _MAP:
            # (A PMap is read in one pass: its [] is slow, and misses NaN keys.)
            m = x if isinstance(x, dict) else dict(x.items())
            keys = _sorted_keys(m.keys())
            return keys, list(map(m.__getitem__, keys))
        if kind == _DATACLASS:
            kids, static, get_kids, get_static = _dataclass_info[id(type(x))]
            return (kids, static, get_static(x)), list(get_kids(x))
        if kind == _NONE:
            return None, []
        t = type(x)
        if t is list or t is tuple:
            return None, list(x)
        if kind == _UNSUPPORTED:
            raise _Refused(_unsupported(t))
        # By iteration only: a subclass's __len__ is not trusted even as a hint.
        items = list(iter(x))
    except (_Refused, RecursionError):
        raise
    except Exception as e:  # the container's own code (keys, [], a property) raised: say where
        raise _Refused(_unreadable(x, kind, e)) from e
    if kind == _NAMEDTUPLE and len(items) != len(t._fields):
        raise _Refused(f"the {t.__name__} has {len(items)} items but {len(t._fields)} _fields")
    return None, items


def _unreadable(x: Any, kind: str, e: Exception) -> str:
    name, error = type(x).__name__, _safe_repr(e, 200)
    if kind == _DATACLASS:
        for field in _dataclass_info[id(type(x))][:2]:
            for f in field:
                try:
                    getattr(x, f)
                except Exception:  # noqa: BLE001 - the one that failed, named
                    return (
                        f"the {name}'s field {f!r} cannot be read ({error}); a field declared with "
                        "init=False must be set in __post_init__ (or given a default)"
                    )
    if kind == _MAP and isinstance(e, KeyError):
        key = _safe_repr(e.args[0] if e.args else None, 60)
        return f"the {name}'s keys() lists {key}, which its [] does not find"
    return f"reading the items of the {name} raised {error}"


def tree_flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """Flatten a pytree into its leaves and its structure.

    Dict and PMap keys come in sorted order when they are all strings or all
    real numbers, else in a canonical order (by type, then value or repr)
    that is the same for any dict or PMap with these keys.

    Args:
        tree: any nesting of supported containers, to any depth.

    Returns:
        ``(leaves, treedef)``; ``tree_unflatten(treedef, leaves)`` rebuilds it.

    Raises:
        ValueError: the tree contains itself (the message gives the path).
        TypeError: a container fgrad does not take (see
            :func:`unsupported_container`), or one whose fields or keys
            cannot be read.

    >>> leaves, td = tree_flatten({"b": [1.0, 2.0], "a": (3.0, None)})
    >>> leaves
    [3.0, 1.0, 2.0]
    >>> tree_unflatten(td, [10.0, 20.0, 30.0])
    {'a': (10.0, None), 'b': [20.0, 30.0]}
    """
    if _fast is not None:  # a structure seen before: its compiled flattener
        hit: tuple[list[Any], TreeDef] | None = _fast.flatten(tree)
        if hit is not None:
            return hit
    leaves: list[Any] = []
    try:
        td = _flatten(tree, leaves)
    except (RecursionError, _Refused):
        # Too deep for Python's stack (or a cycle), or a container refused:
        # walked again with an explicit stack, which knows the paths.
        leaves = []
        td = _flatten_deep(tree, leaves)
    if _fast is not None:
        _fast.seen(tree, td, leaves)
    return leaves, td


# fgrad.treegen installs itself here: structures met again and again (a
# model, its gradients, an optimiser's state) are flattened and rebuilt by
# code generated for them.
_fast: Any = None


def _flatten(x: Any, leaves: list[Any]) -> TreeDef:
    kind = _kinds.get(id(type(x))) or _classify(x)
    if kind == _LEAF:
        leaves.append(x)
        return LEAF
    meta, kids = _children(x, kind)
    start = len(leaves)
    if kids and _all_numbers(kids):
        # A vector of numbers (a neuron's weights): no recursion per entry.
        leaves.extend(kids)
        defs: tuple[TreeDef, ...] = _leaf_defs(len(kids))
    else:
        parts = []
        for k in kids:
            if type(k) is float:  # a leaf inline (a neuron's bias): no call
                leaves.append(k)
                parts.append(LEAF)
            else:
                parts.append(_flatten(k, leaves))
        defs = tuple(parts)
    node_type = _node_types.get(id(type(x))) or type(x)
    if node_type is _PER_INSTANCE:
        node_type = _instance_node_type(x, meta)
    # tuple.__new__ directly: NamedTuple's generated __new__ is a Python call.
    return _new_tuple(TreeDef, (kind, node_type, meta, defs, len(leaves) - start))


def _flatten_deep(tree: Any, leaves: list[Any]) -> TreeDef:
    """:func:`_flatten` with an explicit stack: any depth, and errors that say
    where (a container refused, or one that contains itself)."""
    # A frame: [container, kind, meta, children, their TreeDefs so far, leaves before it, node type]
    stack: list[list[Any]] = []
    on_path: dict[int, int] = {}  # id of each container being walked -> its frame's index
    x = tree
    while True:
        kind = _kinds.get(id(type(x))) or _classify(x)
        if kind == _LEAF:
            leaves.append(x)
            done = LEAF
        else:
            if id(x) in on_path:
                raise ValueError(
                    f"tree_flatten: the tree contains itself: the {type(x).__name__} at "
                    f"{_frames_path(stack) or 'the root'} is the one at "
                    f"{_frames_path(stack[: on_path[id(x)]]) or 'the root'}; pytrees must not contain "
                    "themselves (build a new container instead of appending one to itself)"
                )
            try:
                meta, kids = _children(x, kind)
                node_type = _node_types.get(id(type(x))) or type(x)
                if node_type is _PER_INSTANCE:
                    node_type = _instance_node_type(x, meta)
            except _Refused as e:
                raise TypeError(f"tree_flatten: at {_frames_path(stack) or 'the root'}: {e}") from e.__cause__
            if kids and not _all_numbers(kids):
                on_path[id(x)] = len(stack)
                stack.append([x, kind, meta, kids, [], len(leaves), node_type])
                x = kids[0]
                continue
            leaves.extend(kids)
            defs = _leaf_defs(len(kids)) if kids else ()
            done = _new_tuple(TreeDef, (kind, node_type, meta, defs, len(kids)))
        while stack:  # hand the finished TreeDef up, to as many frames as it completes
            frame = stack[-1]
            frame[4].append(done)
            if len(frame[4]) < len(frame[3]):
                x = frame[3][len(frame[4])]
                break
            stack.pop()
            del on_path[id(frame[0])]
            done = _new_tuple(
                TreeDef, (frame[1], frame[6], frame[2], tuple(frame[4]), len(leaves) - frame[5])
            )
        else:
            return done


def _frames_path(stack: list[list[Any]]) -> str:
    """The path of the child each frame is at (flatten's and the builders')."""
    parts = []
    for frame in stack:
        kind, meta, i = frame[1], frame[2], len(frame[4])
        names: Any = ()
        if kind == _MAP:
            names = [_safe_repr(k) for k in meta]
        elif kind == _DATACLASS:
            names = meta[0]
        elif kind == _NAMEDTUPLE:
            names = getattr(frame[6], "_fields", ())
        label = f"[{i}]" if i >= len(names) else f"[{names[i]}]" if kind == _MAP else f".{names[i]}"
        parts.append(label)
    return "".join(parts)


_NUMBER_TYPES = frozenset({float, int})
_LEAF_RUNS_KEPT = 256  # runs up to this length are shared, a bounded cache; longer ones are made
_leaf_runs: dict[int, _Leaves] = {}


def _all_numbers(kids: list[Any]) -> bool:
    return set(map(type, kids)) <= _NUMBER_TYPES


def _leaf_defs(n: int) -> _Leaves:
    defs = _leaf_runs.get(n)
    if defs is None:
        defs = _Leaves((LEAF,) * n)
        if n <= _LEAF_RUNS_KEPT:
            _leaf_runs[n] = defs
    return defs


# Unflatten ------------------------------------------------------------------


class _BadTreeDef(Exception):
    """A TreeDef not made by tree_flatten, which does not add up."""


class _Unfaithful(Exception):
    """A subclass of dict or list whose constructor did not keep the items given."""


def _trusted(node_type: Any) -> bool:
    """Rebuilt by a constructor known to keep the items given."""
    if isinstance(node_type, _Rebuild):
        return type(node_type) in _KEEP_TYPE or node_type.cls is OrderedDict or node_type.cls is defaultdict
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


def tree_unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild a pytree of the given structure from its leaves.

    Args:
        treedef: a structure from :func:`tree_flatten`.
        leaves: exactly ``treedef.num_leaves`` values, in flatten order.

    Returns:
        The tree, with the same container types as the flattened one.
    """
    return _unflatten_checked("tree_unflatten", treedef, leaves, False)


def unflatten_persistent(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Like :func:`tree_unflatten`, but dicts become PMaps and lists PVectors."""
    return _unflatten_checked("unflatten_persistent", treedef, leaves, True)


_END = object()


def _unflatten_checked(name: str, treedef: TreeDef, leaves: Iterable[Any], persistent: bool) -> Any:
    if not isinstance(treedef, TreeDef):
        raise TypeError(
            f"{name}: treedef must be a TreeDef (from tree_flatten or tree_structure), got "
            f"{type(treedef).__name__}; the call is {name}(treedef, leaves)"
        )
    try:
        it = iter(leaves)
    except TypeError:
        raise TypeError(
            f"{name}: leaves must be an iterable of the tree's leaves, got {type(leaves).__name__}"
        ) from None
    items = list(it)
    if len(items) != treedef.num_leaves:
        raise ValueError(
            f"{name}: the structure {_short(treedef)} has {treedef.num_leaves} "
            f"leaves but {len(items)} values were given"
        )
    build = _fast.builder(treedef, persistent) if _fast is not None else None
    if build is not None:
        try:
            return build(items)
        except Exception:  # noqa: BLE001 - a constructor that refused: the walk below says where
            pass
    try:
        it = iter(items)
        out = _build(treedef, it, persistent)
        if next(it, _END) is _END:
            return out
    except Exception:  # noqa: BLE001 - too deep for Python's stack, or an error the walk below places
        pass
    return _build_deep(name, treedef, items, persistent)


def _build(td: TreeDef, it: Iterator[Any], persistent: bool) -> Any:
    if td.kind == _LEAF:
        return next(it)
    defs = td.children
    if type(defs) is _Leaves:
        kids = list(islice(it, len(defs)))  # a vector of leaves, from _flatten's fast path
    else:
        kids = [next(it) if c is LEAF else _build(c, it, persistent) for c in defs]
    return _rebuild(td, kids, persistent)


def _rebuild(td: TreeDef, kids: list[Any], persistent: bool) -> Any:
    """The container of ``td`` holding ``kids`` (a fresh list, which it may keep)."""
    kind, node_type = td.kind, td.node_type
    if kind == _MAP:
        if len(td.meta) != len(kids):
            raise _BadTreeDef(f"{len(td.meta)} keys for {len(kids)} children")
        d = dict(zip(td.meta, kids))
        if node_type is dict:
            return pmap(d) if persistent else d
        if node_type is PMap or (persistent and type(node_type) not in _KEEP_TYPE):
            return pmap(d)
        obj = node_type(d)
        if not _trusted(node_type) and not _holds(obj, d):
            raise _Unfaithful(f"{_type_name(td)}(a dict of the items)")
        return obj
    if kind == _LIST:
        if node_type is list:
            return pvector(kids) if persistent else kids
        if node_type is PVector or (persistent and type(node_type) not in _KEEP_TYPE):
            return pvector(kids)
        obj = node_type(kids)
        if not _trusted(node_type) and not _holds(obj, kids):
            raise _Unfaithful(f"{_type_name(td)}(a list of the items)")
        return obj
    if kind == _TUPLE or kind == _NAMEDTUPLE:
        # Immutable: the items are the whole state, set without calling the
        # class's own __new__ (which may convert or check them, as a
        # dataclass's __post_init__, skipped too).
        return tuple(kids) if node_type is tuple else _new_tuple(node_type, kids)
    if kind == _DATACLASS:
        names, static, static_values = td.meta
        if len(names) != len(kids) or len(static) != len(static_values):
            raise _BadTreeDef(f"{len(names)} fields for {len(kids)} children")
        # Built field by field, bypassing __init__ and __post_init__, so that a
        # tree of gradients or of nodes can take the shape of a validated model.
        obj = object.__new__(node_type)
        for name, value in zip(names, kids):
            object.__setattr__(obj, name, value)
        for name, value in zip(static, static_values):
            object.__setattr__(obj, name, value)
        return obj
    if kind == _NONE:
        return None
    raise _BadTreeDef(f"an unknown kind {_safe_repr(kind, 40)}")


def _build_deep(name: str, td: TreeDef, items: list[Any], persistent: bool) -> Any:
    """:func:`_build` with an explicit stack: any depth, and errors that say where."""
    # A frame: [its TreeDef, kind, meta, children's TreeDefs, values built so far, -, node type]
    # (laid out as flatten's, for _frames_path)
    stack: list[list[Any]] = []
    pos = 0

    def fail(why: str, error: type[Exception] = ValueError) -> Exception:
        return error(f"{name}: at {_frames_path(stack) or 'the root'}: {why}")

    node = td
    while True:
        if not isinstance(node, TreeDef):
            raise fail(f"a child is a {type(node).__name__}, not a TreeDef; build TreeDefs with "
                       "tree_structure", TypeError)
        if node.kind == _LEAF:
            if pos >= len(items):
                raise fail(f"the treedef holds more leaves than its num_leaves, {td.num_leaves}")
            done, pos = items[pos], pos + 1
        elif node.children and type(node.children) is not _Leaves:
            stack.append([node, node.kind, node.meta, node.children, [], 0, node.node_type])
            node = node.children[0]
            continue
        else:
            n = len(node.children)
            if pos + n > len(items):
                raise fail(f"the treedef holds more leaves than its num_leaves, {td.num_leaves}")
            done = _rebuild_placed(node, items[pos : pos + n], persistent, stack, fail)
            pos += n
        while stack:
            frame = stack[-1]
            frame[4].append(done)
            if len(frame[4]) < len(frame[3]):
                node = frame[3][len(frame[4])]
                break
            stack.pop()
            done = _rebuild_placed(frame[0], frame[4], persistent, stack, fail)
        else:
            if pos != len(items):
                raise fail(f"the treedef holds {pos} leaves but its num_leaves says {td.num_leaves}")
            return done


def _rebuild_placed(
    td: TreeDef, kids: list[Any], persistent: bool, stack: list[list[Any]],
    fail: Callable[..., Exception],
) -> Any:
    try:
        return _rebuild(td, kids, persistent)
    except _BadTreeDef as e:
        raise fail(f"the treedef does not add up ({e}); build TreeDefs with tree_structure") from None
    except _Unfaithful as e:
        raise fail(
            f"{e} does not hold the items it was given; a subclass of dict or list must accept one "
            "dict or list of its items, as dict and list do", TypeError,
        ) from None
    except Exception as e:
        raise fail(
            f"could not rebuild the {_type_name(td)} from its children: {type(e).__name__}: {e} "
            "(fgrad calls a subclass of dict or list with one dict or list of the items)", TypeError,
        ) from e


# Queries --------------------------------------------------------------------


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of a pytree, in flatten order.

    >>> tree_leaves([1.0, {"x": 2.0}, None])
    [1.0, 2.0]
    """
    return tree_flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    """The structure of a pytree (its :class:`TreeDef`)."""
    return tree_flatten(tree)[1]


def _check_treedef(name: str, arg: str, td: Any) -> None:
    if not isinstance(td, TreeDef):
        raise TypeError(
            f"{name}: {arg} must be a TreeDef (from tree_flatten or tree_structure), got {type(td).__name__}"
        )


def treedef_equal(a: TreeDef, b: TreeDef) -> bool:
    """``a == b`` at any depth (``==`` itself recurses in C and fails on very
    deep structures). A key or static value whose comparison raises makes
    the structures unequal.

    >>> treedef_equal(tree_structure([1.0, {"a": 2.0}]), tree_structure([3.0, {"a": 4.0}]))
    True
    """
    _check_treedef("treedef_equal", "a", a)
    _check_treedef("treedef_equal", "b", b)
    try:
        return a is b or bool(a == b)
    except RecursionError:
        pass
    except Exception:  # noqa: BLE001 - a static value that cannot compare (an array)
        return False
    stack = [(a, b)]
    try:
        while stack:
            x, y = stack.pop()
            if x is y:
                continue
            if (x.kind != y.kind or x.num_leaves != y.num_leaves or len(x.children) != len(y.children)
                    or x.node_type != y.node_type or x.meta != y.meta):
                return False
            stack.extend(zip(x.children, y.children))
    except Exception:  # noqa: BLE001 - as above
        return False
    return True


def _normal(td: TreeDef) -> Any:
    """A key under which dict ~ PMap and list ~ PVector compare equal."""
    if td.kind in (_MAP, _LIST):
        return (td.kind, td.meta)
    return (td.kind, td.node_type, td.meta)


def structure_mismatch(a: TreeDef, b: TreeDef) -> str | None:
    """Where two structures differ, as a readable path and reason, or None.

    A dict and a PMap with the same keys match, and so do a list and a
    PVector of the same length.

    >>> structure_mismatch(tree_structure({"a": [1.0]}), tree_structure({"a": [1.0, 2.0]}))
    "at ['a']: list of length 1 vs list of length 2"
    """
    _check_treedef("structure_mismatch", "a", a)
    _check_treedef("structure_mismatch", "b", b)
    try:
        if a is b or a == b:
            return None  # the common case, compared as tuples without a Python walk
    except Exception:  # noqa: BLE001 - too deep for ==, or values that cannot compare: walked below
        pass
    # (x, y, where) with where = (label, parent's where): paths are spelt out only for a mismatch.
    stack: list[tuple[TreeDef, TreeDef, Any]] = [(a, b, None)]
    while stack:
        x, y, where = stack.pop()
        if x is y:
            continue
        try:
            differ = _normal(x) != _normal(y) or len(x.children) != len(y.children)
            reason = ""
        except Exception as e:  # noqa: BLE001 - a static value or key whose == raises
            differ, reason = True, f" (their static values or keys cannot be compared: {type(e).__name__})"
        if differ:
            parts = []
            while where is not None:
                parts.append(where[0])
                where = where[1]
            path = "".join(reversed(parts))
            return f"at {path or 'the root'}: {_describe(x)} vs {_describe(y)}{reason}"
        stack.extend((cx, cy, (lab, where)) for cx, cy, lab in zip(x.children, y.children, _child_labels(x)))
    return None


def _describe(td: TreeDef) -> str:
    if td.kind == _LEAF:
        return "a leaf"
    name = _type_name(td)
    if td.kind == _MAP:
        keys = [_safe_repr(k, 40) for k in td.meta[:8]]
        more = f" and {len(td.meta) - 8} more" if len(td.meta) > 8 else ""
        return f"{name} with keys [{', '.join(keys)}]{more}"
    if td.kind == _DATACLASS:
        static = ", ".join(f"{n}={_safe_repr(v, 40)}" for n, v in zip(td.meta[1], td.meta[2]))
        return f"{name}({static})" if static else name
    if td.kind == _NONE:
        return "None"
    return f"{name} of length {len(td.children)}"


def _child_labels(td: TreeDef) -> list[str]:
    n = len(td.children)
    labels: list[str] = []
    if td.kind == _MAP:
        labels = [f"[{_safe_repr(k)}]" for k in td.meta]
    elif td.kind == _DATACLASS:
        labels = [f".{name}" for name in td.meta[0]]
    elif td.kind == _NAMEDTUPLE:
        labels = [f".{name}" for name in getattr(td.node_type, "_fields", ())]
    # (A TreeDef made by hand may not add up: its children keep index labels.)
    return labels if len(labels) == n else [f"[{i}]" for i in range(n)]


def tree_paths(treedef: TreeDef) -> list[str]:
    """Readable paths of the leaves of a structure, in flatten order.

    >>> tree_paths(tree_structure({"w": [1.0, 2.0], "b": 0.0}))
    ["['b']", "['w'][0]", "['w'][1]"]
    """
    _check_treedef("tree_paths", "treedef", treedef)
    out: list[str] = []
    stack: list[tuple[TreeDef, str]] = [(treedef, "")]
    while stack:
        td, path = stack.pop()
        if td.kind == _LEAF:
            out.append(path)
            continue
        labels = _child_labels(td)
        stack.extend(reversed([(c, path + lab) for c, lab in zip(td.children, labels)]))
    return out


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
    static values with their types, floats (and complex numbers) by their
    bits, and tuples and frozensets element by element in the same way;
    other values by type and ``==``. Container types compare exactly (a dict
    and a PMap differ). The key is flat (one tuple of tokens, whatever the
    depth) and computed without recursion, so it serves any depth.

    Args:
        treedef: a structure from :func:`tree_flatten`.

    Returns:
        A hashable :class:`TreeKey` (a cache key, e.g. jit's).

    Raises:
        TypeError: a static value (or a key) is unhashable; the message names
            the field and its path.

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


def _value_tokens(v: Any, out: list[Hashable]) -> None:
    """Append a self-delimiting, strict encoding of a key or static value."""
    todo = [v]
    while todo:
        v = todo.pop()
        t = type(v)
        if isinstance(v, float):
            out.append((t, struct.pack("<d", v)))
        elif isinstance(v, complex):
            out.append((t, struct.pack("<dd", v.real, v.imag)))
        elif isinstance(v, tuple):
            out.append(("tuple", t, len(v)))
            todo.extend(reversed(v))
        elif isinstance(v, frozenset):
            parts = []
            for e in v:
                part: list[Hashable] = []
                _value_tokens(e, part)
                parts.append(tuple(part))
            out.append(("frozenset", t, frozenset(parts)))
        else:
            hash(v)  # (here, so that the error can name the field)
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


# tree_map -------------------------------------------------------------------


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf by leaf to one or more trees of the same structure.

    A dict and a PMap with the same keys match, and so do a list and a PVector
    of the same length, so params given as plain containers combine with
    gradients that came back persistent. The result has the first tree's
    structure, made persistent.

    Args:
        f: called as ``f(leaf, *matching_leaves)``.
        tree: the first tree; it sets the result's structure.
        *rest: trees of the same structure.

    Returns:
        A new tree; no input is modified.

    >>> tree_map(lambda p, g: p - 0.5 * g, {"w": 1.0}, {"w": 4.0})
    pmap({'w': -1.0})
    """
    if not callable(f):
        raise TypeError(
            f"tree_map: f must be callable, got a {type(f).__name__}; the call is tree_map(f, tree, *rest)"
        )
    leaves, td = tree_flatten(tree)
    others = []
    for i, other in enumerate(rest):
        o_leaves, o_td = tree_flatten(other)
        where = structure_mismatch(td, o_td)
        if where is not None:
            raise ValueError(
                f"tree_map: tree {i + 1} (counting from 0) does not match the "
                f"structure of tree 0 {where}. Pass trees of the same shape."
            )
        others.append(o_leaves)
    return unflatten_persistent(td, [f(*xs) for xs in zip(leaves, *others)])
