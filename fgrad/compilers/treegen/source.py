"""The source writer of treegen's code, and what it compiles.

:class:`Source` collects the lines of one generated function and the Python
objects it refers to (``K[i]``: types, field names, keys, static values),
and runs them; :func:`compilable` says whether a structure may be compiled
at all (not too large or deep, adding up, and for a flattener, of containers
read as ``tree_flatten`` reads them).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.engine.tree import TreeDef
from fgrad.engine.tree.kinds import _Ordered, _Rebuild, _trusted
from fgrad.engine.tree.shape import _Leaves

__all__ = ["Source", "compilable", "ordered_dict", "MAX_LEAVES", "MAX_ITEMS", "MAX_DEPTH"]

# Larger structures keep the generic walk. A walk's source has a line or an
# expression per container, per child that is not part of a run of leaves,
# and per dataclass field (static ones too); its size (and CPython's time and
# memory compiling it) is that count of items, not the leaves: 3,999
# dataclasses of 75 float fields took 4.6 s and 1.4 GB, a list of 100,000
# one-key dicts 13 s and 2.7 GB. So at most MAX_ITEMS of them (the worst
# shapes then compile both walks in 0.3-0.9 s and 100-200 MB), and at most
# MAX_LEAVES leaves (the caches count leaves). A 2-256-256-1 model with adam's
# two moments beside it (200,452 leaves, 10,829 items) is compiled: its
# vmap step under jit went from 80 to 50 ms at batch 100 (one run each).
# Deeper structures keep the generic walk too: no model is nested that deep,
# and the code generators recurse.
MAX_LEAVES = 300_000
MAX_ITEMS = 20_000
MAX_DEPTH = 100

_object_new = object.__new__
_set = object.__setattr__


def _make(cls: type, names: tuple[str, ...], values: Sequence[Any]) -> Any:
    """A dataclass instance from field values, bypassing ``__init__`` (as
    tree_unflatten does: a tree of gradients takes the shape of a model)."""
    obj: Any = _object_new(cls)
    for name, value in zip(names, values):
        _set(obj, name, value)
    return obj


class Source:
    """One generated function being written: its lines, and the objects its
    code refers to as ``K[i]``; :meth:`run` compiles it."""

    def __init__(self) -> None:
        self.consts: list[Any] = []
        self.lines: list[str] = []
        self.fresh = 0

    def const(self, x: Any) -> str:
        """``x`` kept beside the code, and how the code names it."""
        self.consts.append(x)
        return f"K[{len(self.consts) - 1}]"

    def temp(self) -> str:
        """A fresh local variable's name."""
        self.fresh += 1
        return f"a{self.fresh}"

    def run(self, name: str) -> Callable[..., Any]:
        """The function ``name`` the lines define, compiled."""
        namespace: dict[str, Any] = {
            "K": tuple(self.consts),
            "MAKE": _make,
            "NEW": _object_new,
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


_KINDS = frozenset({"leaf", "none", "tuple", "namedtuple", "list", "map", "dataclass"})
# Containers the compiled flattener reads as tree_flatten does (a subclass of
# dict or list may override how its items are read).
_FLAT_TYPES = (list, dict, PVector, PMap)


def compilable(td: TreeDef, flatten: bool) -> bool:
    """Not too large or deep, and adding up (a TreeDef made by hand may not);
    for a flattener, also of containers it reads as tree_flatten does."""
    if not isinstance(td, TreeDef) or td.num_leaves > MAX_LEAVES:
        return False
    stack = [(td, 1)]
    items = 0
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
        if t.kind == "dataclass":  # (the builder writes a line per field, static ones too)
            items += 1 + n + len(t.meta[1])
        else:
            items += 1 + (1 if type(t.children) is _Leaves else n)
        if items > MAX_ITEMS:
            return False
        node_type = t.node_type
        if flatten:
            if t.kind in ("list", "map"):
                if not (any(node_type is c for c in _FLAT_TYPES) or ordered_dict(node_type)):
                    return False
            elif isinstance(node_type, _Rebuild):
                return False
        elif t.kind in ("list", "map") and not any(node_type is c for c in _FLAT_TYPES):
            if not _trusted(node_type):
                return False  # (a subclass, whose constructor tree._rebuild checks)
        if type(t.children) is not _Leaves:
            stack.extend((c, depth + 1) for c in t.children)
    return True


def ordered_dict(node_type: Any) -> bool:
    """A plain dict in an insertion order of its own (``tree.kinds._Ordered``)."""
    return isinstance(node_type, _Ordered) and node_type.cls is dict
