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

from collections.abc import Callable, Sequence
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from .tree import TreeDef, _dataclass_layout, _getters, _leaf_tuples

__all__ = ["unflattener", "flattener", "MAX_LEAVES"]

# Larger structures keep the generic walk: their source would cost more to
# compile than it saves.
MAX_LEAVES = 20_000

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
            "K": tuple(self.consts), "MAKE": _make, "MAKE_PLAIN": _make_plain, "PV": pvector, "PM": pmap, "PVector": PVector,
            "DICT": dict, "ZIP": zip, "TYPE": type, "LEN": len, "FLOAT": float, "SET": set,
            "MAP": map, "FLOATS": frozenset({float}),
        }
        exec(compile("\n".join(self.lines) + "\n", f"<fgrad.treegen {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]  # type: ignore[no-any-return]


def unflattener(td: TreeDef) -> Callable[[Sequence[Any]], Any] | None:
    """A function rebuilding trees of structure ``td`` from a sequence of its
    leaves (as ``tree_unflatten`` does), or None for a very large structure."""
    if td.num_leaves > MAX_LEAVES:
        return None
    src = _Source()
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
            return f"PM({d})" if t.node_type is PMap else f"{src.const(t.node_type)}({d})"
        if kind == "list":
            return f"PV({kids})" if t.node_type is PVector else f"{src.const(t.node_type)}({kids})"
        if kind == "tuple":
            return f"tuple({kids})" if t.node_type is tuple else f"{src.const(t.node_type)}({kids})"
        if kind == "namedtuple":
            return f"{src.const(t.node_type)}(*{kids})"
        names, static, static_values = t.meta
        cls, fields = src.const(t.node_type), src.const(names + static)
        make = "MAKE" if hasattr(t.node_type, "__slots__") else "MAKE_PLAIN"
        return f"{make}({cls}, {fields}, (*{kids}, *{src.const(static_values)}))"

    body = build(td)
    src.lines = ["def unflatten(L):", f"    return {body}"]
    return src.run("unflatten")


def flattener(td: TreeDef) -> Callable[[Any], list[Any] | None] | None:
    """A function returning the leaves of a tree of structure ``td`` whose
    leaves are floats (as ``tree_flatten`` does), or None when the tree has
    another structure or another kind of leaf (the caller then takes the
    general path). None for a very large structure."""
    if td.num_leaves > MAX_LEAVES:
        return None
    src = _Source()
    lines = ["def flatten(x0):", "    out = []"]

    def walk(t: TreeDef, var: str) -> None:
        if t.kind == "leaf":
            lines.append(f"    out.append({var})")
            return
        if t.kind == "none":
            lines.append(f"    if {var} is not None: return None")
            return
        if t.node_type is PVector or t.node_type is PMap:  # abstract: the C types register
            lines.append(f"    if not isinstance({var}, {src.const(t.node_type)}): return None")
        else:
            lines.append(f"    if TYPE({var}) is not {src.const(t.node_type)}: return None")
        if t.kind == "dataclass":
            names, static, static_values = t.meta
            _dataclass_layout(t.node_type)
            get_kids, get_static = _getters[t.node_type]
            lines.append(f"    if {src.const(get_static)}({var}) != {src.const(static_values)}: return None")
            kids = src.temp()
            lines.append(f"    {kids} = {src.const(get_kids)}({var})")
        elif t.kind == "map":
            kids = src.temp()
            lines.append(f"    if LEN({var}) != {len(t.meta)} or SET({var}) != {src.const(set(t.meta))}: "
                         "return None")
            lines.append(f"    {kids} = [{var}[k] for k in {src.const(t.meta)}]")
        else:
            kids = var
            lines.append(f"    if LEN({var}) != {len(t.children)}: return None")
        if t.children and t.children is _leaf_tuples.get(len(t.children)):
            lines.append(f"    out.extend({kids})")
            return
        for k, c in enumerate(t.children):
            child = src.temp()
            lines.append(f"    {child} = {kids}[{k}]")
            walk(c, child)

    walk(td, "x0")
    # Every leaf a float, checked in one pass (a container where a leaf was
    # expected is caught here too).
    lines.append("    return out if FLOATS.issuperset(MAP(TYPE, out)) else None")
    src.lines = lines
    return src.run("flatten")
