"""Compiled flattening: the leaves of a tree assumed to have one structure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.compilers.treegen.source import Source, compilable, ordered_dict
from fgrad.engine.tree import TreeDef
from fgrad.engine.tree.kinds import _dataclass_fields
from fgrad.engine.tree.shape import _Leaves

__all__ = ["flattener"]


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
    if not compilable(td, flatten=True):
        return None
    try:
        return _flattener(td)
    except RecursionError:  # (called with Python's stack nearly full)
        return None


def _flattener(td: TreeDef) -> Callable[[Any], list[Any] | None] | None:
    src = Source()
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
        elif ordered_dict(t.node_type):  # a dict, in this insertion order
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
