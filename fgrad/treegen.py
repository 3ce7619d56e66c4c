"""Compiled (un)flattening for one pytree structure: jit's per-call overhead.

A jitted training step takes a model and returns a model: flattening the
arguments and rebuilding the results are a Python walk over every container
on every call. For a structure seen before, these functions do the same work
as straight-line code generated once per structure:

- :func:`unflattener` builds the tree from its leaves in one expression;
- :func:`flattener` reads the leaves of a tree *assumed* to have the
  structure, checking every container's type, length and static values on
  the way, and returns None when anything differs (the caller then falls
  back to :func:`fgrad.tree.tree_flatten`).

Only identifiers made here reach the source; types, field names, keys and
static values stay in Python objects beside it (``K[i]``).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from . import tree as _tree
from .tree import TreeDef, _dataclass_layout, _getters, _leaf_tuples

__all__ = ["unflattener", "flattener", "FlattenCache", "MAX_LEAVES", "MIN_LEAVES"]

# Larger structures keep the generic walk: their source would cost more to
# compile than it saves. So do small ones, for tree_flatten/tree_unflatten
# (jit compiles its own whatever their size).
MAX_LEAVES = 20_000
MIN_LEAVES = 16

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
            "K": tuple(self.consts), "MAKE": _make, "MAKE_PLAIN": _make_plain, "PV": pvector, "PM": pmap,
            "DICT": dict, "ZIP": zip, "TYPE": type, "LEN": len, "FLOAT": float, "SET": set,
            "MAP": map, "FLOATS": frozenset({float}), "ALL": all, "IS": operator.is_,
        }
        exec(compile("\n".join(self.lines) + "\n", f"<fgrad.treegen {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]  # type: ignore[no-any-return]


def unflattener(td: TreeDef, persistent: bool = False) -> Callable[[Sequence[Any]], Any] | None:
    """A function rebuilding trees of structure ``td`` from a sequence of its
    leaves (as ``tree_unflatten`` does; with ``persistent``, as
    ``unflatten_persistent``), or None for a very large structure. One
    statement per container, so any depth compiles."""
    if td.num_leaves > MAX_LEAVES:
        return None
    src = _Source()
    lines = ["def unflatten(L):"]
    counter = iter(range(td.num_leaves))

    def build(t: TreeDef) -> str:
        kind = t.kind
        if kind == "leaf":
            return f"L[{next(counter)}]"
        if kind == "none":
            return "None"
        if t.children and t.children is _leaf_tuples.get(len(t.children)):
            start = next(counter)
            for _ in range(t.num_leaves - 1):
                next(counter)
            kids = f"L[{start}:{start + t.num_leaves}]"
        else:
            kids = "(" + "".join(build(c) + ", " for c in t.children) + ")"
        if kind == "map":
            d = f"DICT(ZIP({src.const(t.meta)}, {kids}))"
            expr = f"PM({d})" if persistent or t.node_type is PMap else f"{src.const(t.node_type)}({d})"
        elif kind == "list":
            plain = persistent or t.node_type is PVector
            expr = f"PV({kids})" if plain else f"{src.const(t.node_type)}({kids})"
        elif kind == "tuple":
            expr = f"tuple({kids})" if t.node_type is tuple else f"{src.const(t.node_type)}({kids})"
        elif kind == "namedtuple":
            expr = f"{src.const(t.node_type)}(*{kids})"
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
    general path). None for a very large structure, or one with dict keys
    other than strings.

    A tree it accepts is given ``td`` as its structure, so it must be
    indistinguishable from the tree ``td`` was made from: static field
    values must be the very same objects (``1 == True == 1.0`` and
    ``0.0 == -0.0``, but a function may tell them apart), and dict keys
    strings (equal strings are interchangeable)."""
    if td.num_leaves > MAX_LEAVES:
        return None
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
        else:
            lines.append(f"    if TYPE({var}) is not {src.const(t.node_type)}: return None")
        if t.kind == "dataclass":
            names, static, static_values = t.meta
            _dataclass_layout(t.node_type)
            get_kids, get_static = _getters[t.node_type]
            if static:
                lines.append(f"    if not ALL(MAP(IS, {src.const(get_static)}({var}), "
                             f"{src.const(static_values)})): return None")
            kids = src.temp()
            lines.append(f"    {kids} = {src.const(get_kids)}({var})")
        elif t.kind == "map":
            if not all(type(k) is str for k in t.meta):
                return False
            kids = src.temp()
            lines.append(f"    if LEN({var}) != {len(t.meta)} or SET({var}) != {src.const(set(t.meta))}: "
                         "return None")
            lines.append(f"    {kids} = [{var}[k] for k in {src.const(t.meta)}]")
        else:
            kids = var
            lines.append(f"    if LEN({var}) != {len(t.children)}: return None")
        if t.children and t.children is _leaf_tuples.get(len(t.children)):
            lines.append(f"    out.extend({kids})")
            return True
        for k, c in enumerate(t.children):
            child = src.temp()
            lines.append(f"    {child} = {kids}[{k}]")
            if not walk(c, child):
                return False
        return True

    if not walk(td, "x0"):
        return None
    # Every leaf a float, checked in one pass (a container where a leaf was
    # expected is caught here too).
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
    are not remembered: the compiled code serves only float trees."""

    def __init__(self, per_key: int = 4, max_keys: int = 256) -> None:
        self.entries: dict[Any, list[list[Any]]] = {}  # key -> [treedef, times met, flattener], newest first
        self.per_key = per_key
        self.max_keys = max_keys

    def flatten(self, key: Any, tree: Any) -> tuple[list[Any], TreeDef] | None:
        for entry in self.entries.get(key, ()):
            if entry[2] is not None:
                leaves = entry[2](tree)
                if leaves is not None:
                    return leaves, entry[0]
        return None

    def seen(self, key: Any, td: TreeDef, leaves: list[Any]) -> None:
        """A tree the compiled flatteners did not take, walked generically."""
        if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES or not _FLOATS.issuperset(map(type, leaves)):
            return
        entries = self.entries.get(key)
        if entries is None:
            if len(self.entries) >= self.max_keys:
                self.entries.clear()
            entries = self.entries[key] = []
        for entry in entries:
            # An equal structure not compiled yet. (A compiled one refused
            # this tree: its static values are other objects. It is a new
            # structure for the compiled code.)
            if entry[2] is None and _same(entry[0], td):
                entry[1] += 1
                if entry[1] >= 2:
                    # Compiled from this tree, so it must hand back this
                    # tree's TreeDef: an "equal" one may hold static values
                    # that are equal but not the same (1 and True).
                    entry[0], entry[2] = td, flattener(td)
                return
        entries.insert(0, [td, 1, None])
        del entries[self.per_key:]

    def prime(self, key: Any, td: TreeDef) -> None:
        """Compile ``td`` now (jit, for the structure it has just traced)."""
        if MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
            entries = self.entries.setdefault(key, [])
            entries.insert(0, [td, 2, flattener(td)])
            del entries[self.per_key:]


_FLOATS = frozenset({float})
_by_type = FlattenCache()
_builders: dict[tuple[int, bool], list[Any]] = {}  # (id(td), persistent) -> [td, uses, builder]
_MAX_ENTRIES = 256


def flatten(tree: Any) -> tuple[list[Any], TreeDef] | None:
    return _by_type.flatten(type(tree), tree)


def seen(tree: Any, td: TreeDef, leaves: list[Any]) -> None:
    _by_type.seen(type(tree), td, leaves)


def _same(a: TreeDef, b: TreeDef) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - a static value that cannot compare (an array)
        return False


def builder(td: TreeDef, persistent: bool) -> Callable[[Sequence[Any]], Any] | None:
    if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
        return None
    key = (id(td), persistent)
    entry = _builders.get(key)
    if entry is None or entry[0] is not td:  # (a new TreeDef at a recycled id)
        if len(_builders) >= _MAX_ENTRIES:
            _builders.clear()
        _builders[key] = [td, 1, None]
        return None
    entry[1] += 1
    if entry[2] is None:
        entry[2] = unflattener(td, persistent)
    return entry[2]  # type: ignore[no-any-return]


_tree._fast = sys.modules[__name__]
