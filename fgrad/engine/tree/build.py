"""Unflatten: rebuild a tree from a TreeDef and its leaves, by a recursive
walk for speed that hands over to a walk with an explicit stack for trees
deeper than Python's stack allows (and to say where the leaves go wrong)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.engine.tree import walk
from fgrad.engine.tree.kinds import _KEEP_TYPE, _BadTreeDef, _holds, _trusted, _Unfaithful
from fgrad.engine.tree.shape import (
    _DATACLASS,
    _LEAF,
    _LIST,
    _MAP,
    _NAMEDTUPLE,
    _NONE,
    _TUPLE,
    LEAF,
    TreeDef,
    _Leaves,
    _new_tuple,
    _safe_repr,
    _short,
    _type_name,
)
from fgrad.engine.tree.walk import _frames_path

__all__ = ["tree_unflatten", "unflatten_persistent"]


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
    fast = walk._fast
    build = fast.builder(treedef, persistent) if fast is not None else None
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
            raise fail(
                f"a child is a {type(node).__name__}, not a TreeDef; build TreeDefs with tree_structure",
                TypeError,
            )
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
    td: TreeDef,
    kids: list[Any],
    persistent: bool,
    stack: list[list[Any]],
    fail: Callable[..., Exception],
) -> Any:
    try:
        return _rebuild(td, kids, persistent)
    except _BadTreeDef as e:
        raise fail(f"the treedef does not add up ({e}); build TreeDefs with tree_structure") from None
    except _Unfaithful as e:
        raise fail(
            f"{e} does not hold the items it was given; a subclass of dict or list must accept one "
            "dict or list of its items, as dict and list do",
            TypeError,
        ) from None
    except Exception as e:
        raise fail(
            f"could not rebuild the {_type_name(td)} from its children: {type(e).__name__}: {e} "
            "(fgrad calls a subclass of dict or list with one dict or list of the items)",
            TypeError,
        ) from e
