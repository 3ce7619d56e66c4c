"""Compiled (un)flattening for one pytree structure: jit's per-call overhead.

A jitted training step takes a model and returns a model: flattening the
arguments and rebuilding the results are a Python walk over every container
on every call. For a structure seen before, these functions do the same work
as straight-line code generated once per structure:

- :func:`unflattener` builds the tree from its leaves in one expression;
- :func:`flattener` reads the leaves of a tree *assumed* to have the
  structure, checking every container's type, length and static values on
  the way, and returns None when anything differs (the caller then falls
  back to :func:`fgrad.engine.tree.tree_flatten`).

Only identifiers made here reach the source; types, field names, keys and
static values stay in Python objects beside it (``K[i]``).

Structures nested deeper than :data:`MAX_DEPTH` are not compiled (the
generic walks serve any depth), and the caches below are bounded both in
entries and in the leaves of the structures they hold.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.engine.tree import TreeDef, treedef_equal
from fgrad.engine.tree import walk as _walk
from fgrad.engine.tree.kinds import _KEEP_TYPE, _dataclass_fields, _Ordered, _Rebuild, _trusted
from fgrad.engine.tree.shape import _Leaves

__all__ = ["unflattener", "flattener", "FlattenCache", "MAX_LEAVES", "MIN_LEAVES", "MAX_DEPTH"]

# Larger structures keep the generic walk: their source would cost more to
# compile than it saves. So do small ones, for tree_flatten/tree_unflatten
# (jit compiles its own whatever their size). Deeper ones too: no model is
# nested that deep, and the code generators recurse.
MAX_LEAVES = 20_000
MIN_LEAVES = 16
MAX_DEPTH = 100
# What the caches below may hold in all: the leaves of their structures
# (their compiled code is about as big).
MAX_CACHED_LEAVES = 200_000

_object_new = object.__new__
_set = object.__setattr__


def _make(cls: type, names: tuple[str, ...], values: Sequence[Any]) -> Any:
    """A dataclass instance from field values, bypassing ``__init__`` (as
    tree_unflatten does: a tree of gradients takes the shape of a model)."""
    obj: Any = _object_new(cls)
    for name, value in zip(names, values):
        _set(obj, name, value)
    return obj


def _make_plain(cls: type, names: tuple[str, ...], values: Sequence[Any]) -> Any:
    """:func:`_make` for a class whose instances keep a ``__dict__``: one
    update instead of a call per field."""
    obj: Any = _object_new(cls)
    obj.__dict__.update(zip(names, values))
    return obj


class _Source:
    def __init__(self) -> None:
        self.consts: list[Any] = []
        self.lines: list[str] = []
        self.fresh = 0

    def const(self, x: Any) -> str:
        self.consts.append(x)
        return f"K[{len(self.consts) - 1}]"

    def temp(self) -> str:
        self.fresh += 1
        return f"a{self.fresh}"

    def run(self, name: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {
            "K": tuple(self.consts),
            "MAKE": _make,
            "MAKE_PLAIN": _make_plain,
            "PV": pvector,
            "PM": pmap,
            "DICT": dict,
            "LIST": list,
            "TUPLE": tuple,
            "TNEW": tuple.__new__,
            "ZIP": zip,
            "TYPE": type,
            "LEN": len,
            "FLOAT": float,
            "SET": set,
            "MAP": map,
            "FLOATS": frozenset({float}),
            "STRS": frozenset({str}),
            "ALL": all,
            "IS": operator.is_,
        }
        exec(compile("\n".join(self.lines) + "\n", f"<fgrad.compilers.treegen {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]  # type: ignore[no-any-return]


def unflattener(td: TreeDef, persistent: bool = False) -> Callable[[Sequence[Any]], Any] | None:
    """A function rebuilding trees of structure ``td`` from a sequence of its
    leaves (as ``tree_unflatten`` does; with ``persistent``, as
    ``unflatten_persistent``), or None for a very large or deep structure
    (or a TreeDef that does not add up). One statement per container."""
    if not _compilable(td, flatten=False):
        return None
    try:
        return _unflattener(td, persistent)
    except RecursionError:  # (called with Python's stack nearly full)
        return None


def _unflattener(td: TreeDef, persistent: bool) -> Callable[[Sequence[Any]], Any]:
    src = _Source()
    lines = ["def unflatten(L):"]
    counter = iter(range(td.num_leaves))

    def build(t: TreeDef) -> str:
        kind = t.kind
        if kind == "leaf":
            return f"L[{next(counter)}]"
        if kind == "none":
            return "None"
        if t.children and type(t.children) is _Leaves:
            start = next(counter)
            for _ in range(t.num_leaves - 1):
                next(counter)
            kids = f"L[{start}:{start + t.num_leaves}]"
        else:
            kids = "(" + "".join(build(c) + ", " for c in t.children) + ")"
        # (As tree._rebuild: a PRecord, CheckedPMap or CheckedPVector keeps its type.)
        keep = type(t.node_type) in _KEEP_TYPE
        if kind == "map":
            d = f"DICT(ZIP({src.const(t.meta)}, {kids}))"
            pm = t.node_type is PMap or (persistent and not keep)
            if _ordered_dict(t.node_type) and not pm:  # straight into its own order
                order = t.node_type.order
                keys = src.const(tuple(t.meta[i] for i in order))
                expr = f"DICT(ZIP({keys}, {src.const(operator.itemgetter(*order))}({kids})))"
            else:
                expr = f"PM({d})" if pm else f"{src.const(t.node_type)}({d})"
        elif kind == "list":
            pv = t.node_type is PVector or (persistent and not keep)
            expr = f"PV({kids})" if pv else f"{src.const(t.node_type)}({kids})"
        elif kind == "tuple" and t.node_type is tuple:
            expr = f"tuple({kids})"
        elif kind in ("tuple", "namedtuple"):  # (as tree._rebuild: without the class's own __new__)
            expr = f"TNEW({src.const(t.node_type)}, {kids})"
        else:
            names, static, static_values = t.meta
            cls, fields = src.const(t.node_type), src.const(names + static)
            make = "MAKE_PLAIN" if _plain_fields(t.node_type, names + static) else "MAKE"
            expr = f"{make}({cls}, {fields}, (*{kids}, *{src.const(static_values)}))"
        name = src.temp()
        lines.append(f"    {name} = {expr}")
        return name

    lines.append(f"    return {build(td)}")
    src.lines = lines
    return src.run("unflatten")


_KINDS = frozenset({"leaf", "none", "tuple", "namedtuple", "list", "map", "dataclass"})
# Containers the compiled flattener reads as tree_flatten does (a subclass of
# dict or list may override how its items are read).
_FLAT_TYPES = (list, dict, PVector, PMap)


def _compilable(td: TreeDef, flatten: bool) -> bool:
    """Not too large or deep, and adding up (a TreeDef made by hand may not);
    for a flattener, also of containers it reads as tree_flatten does."""
    if not isinstance(td, TreeDef) or td.num_leaves > MAX_LEAVES:
        return False
    stack = [(td, 1)]
    while stack:
        t, depth = stack.pop()
        if not isinstance(t, TreeDef) or t.kind not in _KINDS or depth > MAX_DEPTH:
            return False
        if t.kind == "leaf":
            if t.num_leaves != 1:
                return False
            continue
        if sum(c.num_leaves if isinstance(c, TreeDef) else -1 for c in t.children) != t.num_leaves:
            return False
        n = len(t.children)
        if t.kind == "map" and len(t.meta) != n:
            return False
        if t.kind == "dataclass" and (len(t.meta[0]) != n or len(t.meta[1]) != len(t.meta[2])):
            return False
        node_type = t.node_type
        if flatten:
            if t.kind in ("list", "map"):
                if not (any(node_type is c for c in _FLAT_TYPES) or _ordered_dict(node_type)):
                    return False
            elif isinstance(node_type, _Rebuild):
                return False
        elif t.kind in ("list", "map") and not any(node_type is c for c in _FLAT_TYPES):
            if not _trusted(node_type):
                return False  # (a subclass, whose constructor tree._rebuild checks)
        if type(t.children) is not _Leaves:
            stack.extend((c, depth + 1) for c in t.children)
    return True


def _ordered_dict(node_type: Any) -> bool:
    """A plain dict in an insertion order of its own (``tree.kinds._Ordered``)."""
    return isinstance(node_type, _Ordered) and node_type.cls is dict


def _plain_fields(cls: type, fields: tuple[str, ...]) -> bool:
    """Instances keep a ``__dict__`` and no field is a data descriptor (a
    property-like class attribute): fields may be written in one update."""
    if hasattr(cls, "__slots__"):
        return False
    for f in fields:
        # The raw class attribute (getattr would call a descriptor's __get__).
        attr = next((k.__dict__[f] for k in cls.__mro__ if f in k.__dict__), None)
        if hasattr(type(attr), "__set__"):
            return False
    return True


def flattener(td: TreeDef) -> Callable[[Any], list[Any] | None] | None:
    """A function returning the leaves of a tree of structure ``td`` whose
    leaves are floats (as ``tree_flatten`` does), or None when the tree has
    another structure or another kind of leaf (the caller then takes the
    general path; the function may also raise, for a container whose
    attributes or length lie, and the caller then does the same). None for
    a very large or deep structure, one with dict keys other than strings,
    or one with containers other than lists, tuples (and namedtuples),
    dicts, PMaps, PVectors and dataclasses (subclasses of dict and list may
    read their items in ways this code would not).

    A tree it accepts is given ``td`` as its structure, so it must be
    indistinguishable from the tree ``td`` was made from: static field
    values must be the very same objects (``1 == True == 1.0`` and
    ``0.0 == -0.0``, but a function may tell them apart), and dict keys
    strings, of type ``str`` exactly (equal strings are interchangeable;
    a ``str`` subclass such as a StrEnum member is not)."""
    if not _compilable(td, flatten=True):
        return None
    try:
        return _flattener(td)
    except RecursionError:  # (called with Python's stack nearly full)
        return None


def _flattener(td: TreeDef) -> Callable[[Any], list[Any] | None] | None:
    src = _Source()
    lines = ["def flatten(x0):", "    out = []"]

    def walk(t: TreeDef, var: str) -> bool:
        if t.kind == "leaf":
            lines.append(f"    out.append({var})")
            return True
        if t.kind == "none":
            lines.append(f"    if {var} is not None: return None")
            return True
        if t.node_type is PVector or t.node_type is PMap:
            # Abstract classes (isinstance is slow through them): check the
            # concrete type pyrsistent makes; any other falls back.
            concrete: type = type(pvector()) if t.node_type is PVector else type(pmap())
            lines.append(f"    if TYPE({var}) is not {src.const(concrete)}: return None")
        elif _ordered_dict(t.node_type):  # a dict, in this insertion order
            in_order = tuple(t.meta[i] for i in t.node_type.order)
            lines.append(
                f"    if TYPE({var}) is not DICT or TUPLE({var}) != {src.const(in_order)}: return None"
            )
        else:
            lines.append(f"    if TYPE({var}) is not {src.const(t.node_type)}: return None")
        if t.kind == "dataclass":
            names, static, static_values = t.meta
            *_, get_kids, get_static = _dataclass_fields(t.node_type)
            if static:
                lines.append(
                    f"    if not ALL(MAP(IS, {src.const(get_static)}({var}), "
                    f"{src.const(static_values)})): return None"
                )
            kids = src.temp()
            lines.append(f"    {kids} = {src.const(get_kids)}({var})")
        elif t.kind == "map":
            if not all(type(k) is str for k in t.meta):
                return False
            kids, keys = src.temp(), src.const(set(t.meta))
            if t.node_type is PMap:  # (read in one pass, as tree_flatten does)
                lines.append(f"    {var} = DICT({var}.items())")
            # (Keys of type str exactly: a str subclass, equal, may mean something else.)
            lines.append(
                f"    if not ({keys} == {var}.keys() and STRS.issuperset(MAP(TYPE, {var}))): return None"
            )
            lines.append(f"    {kids} = LIST(MAP({var}.__getitem__, {src.const(t.meta)}))")
        else:
            kids = var
            lines.append(f"    if LEN({var}) != {len(t.children)}: return None")
        if t.children and type(t.children) is _Leaves:
            lines.append(f"    out.extend({kids})")
            return True
        if not t.children:
            return True
        # Unpacked, that is iterated, as tree_flatten reads sequences (and the
        # values of the dict, in the order of its sorted keys, just read).
        children = [src.temp() for _ in t.children]
        lines.append(f"    {', '.join(children)}, = {kids}")
        return all(walk(c, child) for c, child in zip(t.children, children))

    if not walk(td, "x0"):
        return None
    # Every leaf a float, checked in one pass (a container where a leaf was
    # expected is caught here too), and as many as the structure has (a
    # container whose length lies would give others).
    lines.append(f"    if LEN(out) != {td.num_leaves}: return None")
    lines.append("    return out if FLOATS.issuperset(MAP(TYPE, out)) else None")
    src.lines = lines
    return src.run("flatten")


# tree_flatten / tree_unflatten's cache --------------------------------------
# A structure is compiled the second time it is met (once is often a one-off),
# keyed by the tree's top-level type (flatten) or the TreeDef object (unflatten).


class FlattenCache:
    """Compiled flatteners for the float trees met most recently, a few per
    key (a tree's type; a GAN updates two MLPs in turn). A structure is
    compiled the second time it is met. Trees whose leaves are not all floats
    are not remembered: the compiled code serves only float trees. Bounded in
    keys, entries per key and leaves held in all (then it starts afresh)."""

    def __init__(self, per_key: int = 4, max_keys: int = 256, max_leaves: int = MAX_CACHED_LEAVES) -> None:
        # key -> [treedef, times met (or _REFUSED), flattener], newest first
        self.entries: dict[Any, list[list[Any]]] = {}
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_leaves = max_leaves
        self.leaves = 0  # of the structures held

    def flatten(self, key: Any, tree: Any) -> tuple[list[Any], TreeDef] | None:
        for entry in self.entries.get(key, ()):
            if entry[2] is not None:
                try:
                    leaves = entry[2](tree)
                except Exception:  # noqa: BLE001 - a container whose length or fields lie: the general walk says
                    return None
                if leaves is not None:
                    return leaves, entry[0]
        return None

    def seen(self, key: Any, td: TreeDef, leaves: list[Any]) -> None:
        """A tree the compiled flatteners did not take, walked generically."""
        if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES or not _FLOATS.issuperset(map(type, leaves)):
            return
        for entry in self.entries.get(key, ()):
            # An equal structure not compiled yet. (A compiled one refused
            # this tree: its static values are other objects. It is a new
            # structure for the compiled code.)
            if entry[2] is None and _same(entry[0], td):
                if entry[1] is _REFUSED:
                    return
                entry[1] += 1
                if entry[1] >= 2:
                    # Compiled from this tree, so it must hand back this
                    # tree's TreeDef: an "equal" one may hold static values
                    # that are equal but not the same (1 and True).
                    compiled = flattener(td)
                    entry[0], entry[1], entry[2] = td, _REFUSED if compiled is None else entry[1], compiled
                return
        self._add(key, [td, 1, None])

    def prime(self, key: Any, td: TreeDef) -> None:
        """Compile ``td`` now (jit, for the structure it has just traced)."""
        if MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
            compiled = flattener(td)
            self._add(key, [td, _REFUSED if compiled is None else 2, compiled])

    def _add(self, key: Any, entry: list[Any]) -> None:
        entries = self.entries.get(key)
        if (
            entries is None
            and len(self.entries) >= self.max_keys
            or (self.leaves + entry[0].num_leaves > self.max_leaves)
        ):
            self.entries.clear()
            self.leaves, entries = 0, None
        if entries is None:
            entries = self.entries[key] = []
        entries.insert(0, entry)
        self.leaves += entry[0].num_leaves
        for old in entries[self.per_key :]:
            self.leaves -= old[0].num_leaves
        del entries[self.per_key :]


_REFUSED: Any = "refused"  # an entry's count once its structure would not compile: not tried again
_FLOATS = frozenset({float})
_by_type = FlattenCache()
_builders: dict[tuple[int, bool], list[Any]] = {}  # (id(td), persistent) -> [td, uses, builder]
_MAX_ENTRIES = 256
_builder_leaves = 0  # of the structures in _builders


def flatten(tree: Any) -> tuple[list[Any], TreeDef] | None:
    return _by_type.flatten(type(tree), tree)


def seen(tree: Any, td: TreeDef, leaves: list[Any]) -> None:
    _by_type.seen(type(tree), td, leaves)


def _same(a: TreeDef, b: TreeDef) -> bool:
    return treedef_equal(a, b)  # (any depth; static values that cannot compare are not the same)


def builder(td: TreeDef, persistent: bool) -> Callable[[Sequence[Any]], Any] | None:
    global _builder_leaves
    if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
        return None
    key = (id(td), persistent)
    entry = _builders.get(key)
    if entry is None or entry[0] is not td:  # (a new TreeDef, perhaps at a recycled id)
        if entry is not None:
            _builder_leaves -= entry[0].num_leaves
            del _builders[key]
        if len(_builders) >= _MAX_ENTRIES or _builder_leaves + td.num_leaves > MAX_CACHED_LEAVES:
            _builders.clear()
            _builder_leaves = 0
        _builders[key] = [td, 1, None]
        _builder_leaves += td.num_leaves
        return None
    if entry[1] is _REFUSED:
        return None
    entry[1] += 1
    if entry[2] is None:
        entry[2] = unflattener(td, persistent)
        if entry[2] is None:
            entry[1] = _REFUSED
    return entry[2]  # type: ignore[no-any-return]


_walk._fast = sys.modules[__name__]
