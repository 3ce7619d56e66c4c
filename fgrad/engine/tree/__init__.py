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
CheckedPVector keeps its type. Dataclasses, tuples (namedtuples too) and the
checked pyrsistent types are rebuilt without calling their constructors
(``__init__``, ``__post_init__``, ``__new__``) and without their field checks
and invariants, so that a tree of gradients or of graph nodes can take the
shape of a validated model; a subclass of dict or list is called with one
dict or list of its items, and must keep them.

Trees may be nested to any depth (the walks hand over to an explicit stack
when Python's would run out); a tree that contains itself is refused.

This package imports nothing else of fgrad. Its modules: :mod:`.shape` (TreeDef
and what reads one), :mod:`.kinds` (which objects are containers and how
each is rebuilt), :mod:`.walk` (flatten), :mod:`.build` (unflatten), :mod:`.keys` (key
order and :func:`treedef_key`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fgrad.engine.tree.build import tree_unflatten, unflatten_persistent
from fgrad.engine.tree.keys import TreeKey, treedef_key
from fgrad.engine.tree.keys import (
    _sorted_keys as _sorted_keys,  # (fgrad.io saves a PMap in the order it flattens in)
)
from fgrad.engine.tree.kinds import static_field, unsupported_container
from fgrad.engine.tree.shape import LEAF, TreeDef, structure_mismatch, tree_paths, treedef_equal
from fgrad.engine.tree.walk import tree_flatten

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
    "unflatten_persistent",
    "TreeKey",
    "LEAF",
]


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of a pytree, in flatten order.

    >>> tree_leaves([1.0, {"x": 2.0}, None])
    [1.0, 2.0]
    """
    return tree_flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    """The structure of a pytree (its :class:`TreeDef`)."""
    return tree_flatten(tree)[1]


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
