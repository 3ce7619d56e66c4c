"""Compiled unflattening: a tree of one structure built from its leaves."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from pyrsistent import PMap, PVector

from fgrad.compilers.treegen.source import Source, compilable, ordered_dict
from fgrad.engine.tree import TreeDef
from fgrad.engine.tree.kinds import _KEEP_TYPE
from fgrad.engine.tree.shape import _Leaves

__all__ = ["unflattener"]


def unflattener(td: TreeDef, persistent: bool = False) -> Callable[[Sequence[Any]], Any] | None:
    """A function rebuilding trees of structure ``td`` from a sequence of its
    leaves (as ``tree_unflatten`` does; with ``persistent``, as
    ``unflatten_persistent``), or None for a very large or deep structure
    (or a TreeDef that does not add up). One statement per container."""
    if not compilable(td, flatten=False):
        return None
    try:
        return _unflattener(td, persistent)
    except RecursionError:  # (called with Python's stack nearly full)
        return None


def _unflattener(td: TreeDef, persistent: bool) -> Callable[[Sequence[Any]], Any]:
    src = Source()
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
            parts = [f"L[{start + i}]" for i in range(t.num_leaves)] if kind == "dataclass" else []
        else:
            parts = [build(c) for c in t.children]
            kids = "(" + "".join(p + ", " for p in parts) + ")"
        # (As tree._rebuild: a PRecord, CheckedPMap or CheckedPVector keeps its type.)
        keep = type(t.node_type) in _KEEP_TYPE
        if kind == "map":
            d = f"DICT(ZIP({src.const(t.meta)}, {kids}))"
            pm = t.node_type is PMap or (persistent and not keep)
            if ordered_dict(t.node_type) and not pm:  # straight into its own order
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
            cls = src.const(t.node_type)
            if _plain_fields(t.node_type, names + static):
                # Straight into the instance's __dict__, a line per field
                # (a third of the time of a helper call that sets them).
                name = src.temp()
                lines.append(f"    {name} = NEW({cls})")
                lines.append(f"    D = {name}.__dict__")
                statics = src.const(static_values)
                values = parts + [f"{statics}[{i}]" for i in range(len(static))]
                for field, value in zip(names + static, values):
                    lines.append(f"    D[{src.const(field)}] = {value}")
                return name
            expr = f"MAKE({cls}, {src.const(names + static)}, (*{kids}, *{src.const(static_values)}))"
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
