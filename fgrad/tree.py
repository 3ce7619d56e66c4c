"""Pytrees: flatten nested containers to a list of leaves and back.

Containers are ``None``, tuples, namedtuples, lists, dicts, pyrsistent ``PMap``
and ``PVector``, and dataclasses (fields in declaration order; fields marked
with :func:`static_field` ride in the tree definition instead of being leaves).
Everything else is a leaf, as is a dataclass whose class sets
``__tree_leaf__ = True`` (fgrad's own ``Expr`` nodes do). Dict and PMap keys flatten in sorted order so that
the leaf order never depends on insertion or hash order.

A :class:`TreeDef` records the exact container types, so
``tree_unflatten(*reversed(tree_flatten(t)))`` rebuilds ``t`` as it was. Results
that fgrad *produces* (gradients, ``tree_map``) are made persistent instead:
dict and PMap give PMap, list and PVector give PVector.

This module imports nothing of fgrad.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

from pyrsistent import PMap, PVector, pmap, pvector

__all__ = [
    "TreeDef",
    "static_field",
    "tree_flatten",
    "tree_unflatten",
    "tree_leaves",
    "tree_map",
    "tree_structure",
    "tree_paths",
]

# Container kinds. The kind is stored in the TreeDef instead of the type
# where two types share a layout (dict/PMap, list/PVector) so that
# ``same_structure`` can treat them alike while unflatten still rebuilds the
# original type from ``TreeDef.node_type``.
_LEAF = "leaf"
_NONE = "none"
_TUPLE = "tuple"
_NAMEDTUPLE = "namedtuple"
_LIST = "list"
_MAP = "map"
_DATACLASS = "dataclass"


class TreeDef(NamedTuple):
    """The shape of a pytree: container types, keys, static fields; no leaves.

    TreeDefs are hashable and compare structurally, so they can key caches.
    """

    kind: str
    node_type: Any  # the container's class (None for a leaf)
    meta: Any  # dict keys, dataclass field names and static values
    children: tuple[TreeDef, ...]
    num_leaves: int

    def __repr__(self) -> str:
        if self.kind == _LEAF:
            return "*"
        name = getattr(self.node_type, "__name__", self.kind)
        return f"{name}({', '.join(map(repr, self.children))})"


LEAF = TreeDef(_LEAF, None, None, (), 1)
_new_tuple = tuple.__new__


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


def _sorted_keys(keys: Iterable[Any]) -> tuple[Any, ...]:
    keys = list(keys)
    try:
        return tuple(sorted(keys))
    except TypeError:
        # Mixed key types (say 1 and "a"): order by type name, then repr, which
        # is deterministic across runs, unlike hash order.
        return tuple(sorted(keys, key=lambda k: (type(k).__name__, repr(k))))


def _dataclass_layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names of child fields, names of static fields) of a dataclass type."""
    layout = _layouts.get(cls)
    if layout is None:
        kids: list[str] = []
        static: list[str] = []
        for f in dataclasses.fields(cls):
            (static if f.metadata.get("static") else kids).append(f.name)
        layout = (tuple(kids), tuple(static))
        _layouts[cls] = layout
        _getters[cls] = (_tuple_getter(layout[0]), _tuple_getter(layout[1]))
    return layout


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Fetch several attributes as a tuple in one C call (attrgetter)."""
    if not names:
        return lambda x: ()
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else (lambda x: (get(x),))


_layouts: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_getters: dict[type, tuple[Callable[[Any], tuple[Any, ...]], Callable[[Any], tuple[Any, ...]]]] = {}


def _kind_of(x: Any) -> str:
    t = type(x)
    kind = _kinds.get(t)
    if kind is None:
        if x is None:
            kind = _NONE
        elif isinstance(x, tuple):
            kind = _NAMEDTUPLE if hasattr(t, "_fields") else _TUPLE
        elif isinstance(x, (list, PVector)):
            kind = _LIST
        elif isinstance(x, (dict, PMap)):
            kind = _MAP
        elif (
            dataclasses.is_dataclass(x)
            and not isinstance(x, type)
            and not getattr(t, "__tree_leaf__", False)
        ):
            kind = _DATACLASS
        else:
            kind = _LEAF
        _kinds[t] = kind
    return kind


_kinds: dict[type, str] = {float: _LEAF, int: _LEAF}


def _children(x: Any, kind: str) -> tuple[Any, list[Any]]:
    """(meta, children) of container ``x`` of the given kind."""
    if kind == _MAP:
        keys = _sorted_keys(x.keys())
        return keys, [x[k] for k in keys]
    if kind == _DATACLASS:
        kids, static = _dataclass_layout(type(x))
        get_kids, get_static = _getters[type(x)]
        return (kids, static, get_static(x)), list(get_kids(x))
    if kind == _NONE:
        return None, []
    return None, list(x)


def tree_flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """Flatten a pytree into its leaves and its structure.

    Args:
        tree: any nesting of supported containers.

    Returns:
        ``(leaves, treedef)``; ``tree_unflatten(treedef, leaves)`` rebuilds it.

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
    td = _flatten(tree, leaves)
    if _fast is not None:
        _fast.seen(tree, td, leaves)
    return leaves, td


# fgrad.treegen installs itself here: structures met again and again (a
# model, its gradients, an optimiser's state) are flattened and rebuilt by
# code generated for them.
_fast: Any = None


def _flatten(x: Any, leaves: list[Any]) -> TreeDef:
    kind = _kind_of(x)
    if kind == _LEAF:
        leaves.append(x)
        return LEAF
    meta, kids = _children(x, kind)
    start = len(leaves)
    if kids and _all_numbers(kids):
        # A vector of numbers (a neuron's weights): no recursion per entry.
        leaves.extend(kids)
        defs = _leaf_defs(len(kids))
    else:
        parts = []
        for k in kids:
            if type(k) is float:  # a leaf inline (a neuron's bias): no call
                leaves.append(k)
                parts.append(LEAF)
            else:
                parts.append(_flatten(k, leaves))
        defs = tuple(parts)
    node_type: Any = PVector if kind == _LIST and not isinstance(x, list) else type(x)
    if kind == _MAP and not isinstance(x, dict):
        node_type = PMap
    elif type(x) is defaultdict:
        node_type = _DefaultDict(x.default_factory)
    # tuple.__new__ directly: NamedTuple's generated __new__ is a Python call.
    return _new_tuple(TreeDef, (kind, node_type, meta, defs, len(leaves) - start))


_NUMBER_TYPES = frozenset({float, int})
_leaf_tuples: dict[int, tuple[TreeDef, ...]] = {}


def _all_numbers(kids: list[Any]) -> bool:
    return set(map(type, kids)) <= _NUMBER_TYPES


def _leaf_defs(n: int) -> tuple[TreeDef, ...]:
    defs = _leaf_tuples.get(n)
    if defs is None:
        defs = _leaf_tuples[n] = (LEAF,) * n
    return defs


@dataclass(frozen=True)
class _DefaultDict:
    """Rebuilds a defaultdict with its factory (hashable, for TreeDefs)."""

    factory: Any

    __name__ = "defaultdict"

    def __call__(self, items: dict[Any, Any]) -> defaultdict[Any, Any]:
        return defaultdict(self.factory, items)


def tree_unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild a pytree of the given structure from its leaves.

    Args:
        treedef: a structure from :func:`tree_flatten`.
        leaves: exactly ``treedef.num_leaves`` values, in flatten order.

    Returns:
        The tree, with the same container types as the flattened one.
    """
    return _unflatten_checked(treedef, leaves, persistent=False)


def unflatten_persistent(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Like :func:`tree_unflatten`, but dicts become PMaps and lists PVectors."""
    return _unflatten_checked(treedef, leaves, persistent=True)


def _unflatten_checked(treedef: TreeDef, leaves: Iterable[Any], persistent: bool) -> Any:
    items = list(leaves)
    if len(items) != treedef.num_leaves:
        raise ValueError(
            f"tree_unflatten: the structure {treedef!r} has {treedef.num_leaves} "
            f"leaves but {len(items)} values were given"
        )
    build = _fast.builder(treedef, persistent) if _fast is not None else None
    if build is not None:
        return build(items)
    return _build(treedef, iter(items), persistent)


def _build(td: TreeDef, it: Iterator[Any], persistent: bool) -> Any:
    kind = td.kind
    if kind == _LEAF:
        return next(it)
    if td.children and td.children is _leaf_tuples.get(len(td.children)):
        kids = list(islice(it, td.num_leaves))  # a vector of leaves, from _flatten's fast path
    else:
        kids = [_build(c, it, persistent) for c in td.children]
    if kind == _MAP:
        d = dict(zip(td.meta, kids))
        return pmap(d) if persistent or td.node_type is PMap else td.node_type(d)
    if kind == _LIST:
        return pvector(kids) if persistent or td.node_type is PVector else td.node_type(kids)
    if kind == _TUPLE:
        return tuple(kids) if td.node_type is tuple else td.node_type(kids)
    if kind == _NAMEDTUPLE:
        return td.node_type(*kids)
    if kind == _DATACLASS:
        names, static, static_values = td.meta
        # Built field by field, bypassing __init__ and __post_init__, so that a
        # tree of gradients or of nodes can take the shape of a validated model.
        obj = object.__new__(td.node_type)
        for name, value in zip(names, kids):
            object.__setattr__(obj, name, value)
        for name, value in zip(static, static_values):
            object.__setattr__(obj, name, value)
        return obj
    return None  # _NONE


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of a pytree, in flatten order.

    >>> tree_leaves([1.0, {"x": 2.0}, None])
    [1.0, 2.0]
    """
    return tree_flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    """The structure of a pytree (its :class:`TreeDef`)."""
    return tree_flatten(tree)[1]


def _normal(td: TreeDef) -> Any:
    """A key under which dict ~ PMap and list ~ PVector compare equal."""
    if td.kind in (_MAP, _LIST):
        return (td.kind, td.meta)
    return (td.kind, td.node_type, td.meta)


def structure_mismatch(a: TreeDef, b: TreeDef) -> str | None:
    """Where two structures differ, as a readable path and reason, or None."""
    if a is b or a == b:
        return None  # the common case, compared as tuples without a Python walk
    stack: list[tuple[TreeDef, TreeDef, str]] = [(a, b, "")]
    while stack:
        x, y, path = stack.pop()
        if _normal(x) != _normal(y) or len(x.children) != len(y.children):
            return f"at {path or 'the root'}: {_describe(x)} vs {_describe(y)}"
        labels = _child_labels(x)
        stack.extend((cx, cy, path + lab) for cx, cy, lab in zip(x.children, y.children, labels))
    return None


def _describe(td: TreeDef) -> str:
    if td.kind == _LEAF:
        return "a leaf"
    name = getattr(td.node_type, "__name__", td.kind)
    if td.kind == _MAP:
        return f"{name} with keys {list(td.meta)}"
    if td.kind == _DATACLASS:
        return f"{name}"
    if td.kind == _NONE:
        return "None"
    return f"{name} of length {len(td.children)}"


def _child_labels(td: TreeDef) -> list[str]:
    if td.kind == _MAP:
        return [f"[{k!r}]" for k in td.meta]
    if td.kind == _DATACLASS:
        return [f".{n}" for n in td.meta[0]]
    if td.kind == _NAMEDTUPLE:
        return [f".{n}" for n in td.node_type._fields]
    return [f"[{i}]" for i in range(len(td.children))]


def tree_paths(treedef: TreeDef) -> list[str]:
    """Readable paths of the leaves of a structure, in flatten order.

    >>> tree_paths(tree_structure({"w": [1.0, 2.0], "b": 0.0}))
    ["['b']", "['w'][0]", "['w'][1]"]
    """
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
