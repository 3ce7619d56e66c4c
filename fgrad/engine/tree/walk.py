"""Flatten and unflatten: recursive walks for speed, handing over to walks
with an explicit stack for trees deeper than Python's stack allows (and to
say where a tree goes wrong)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.engine.tree.keys import _sorted_keys
from fgrad.engine.tree.kinds import (
    _KEEP_TYPE,
    _PER_INSTANCE,
    _BadTreeDef,
    _classify,
    _dataclass_info,
    _holds,
    _instance_node_type,
    _kinds,
    _node_types,
    _Refused,
    _trusted,
    _Unfaithful,
    _unsupported,
)
from fgrad.engine.tree.shape import (
    _DATACLASS,
    _LEAF,
    _LIST,
    _MAP,
    _NAMEDTUPLE,
    _NONE,
    _TUPLE,
    _UNSUPPORTED,
    LEAF,
    TreeDef,
    _all_numbers,
    _leaf_defs,
    _Leaves,
    _new_tuple,
    _safe_repr,
    _short,
    _type_name,
)

__all__ = ["tree_flatten", "tree_unflatten", "unflatten_persistent"]

_PVECTOR: type = type(pvector())  # (pyrsistent's own: its length is no lie)
# Bound once: a method of an imported name is looked up as an attribute on
# every call (Python compiles it as for a module's function).
_kind_of_type = _kinds.get
_node_type_of = _node_types.get

# Flatten --------------------------------------------------------------------


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
        if t is list or t is tuple or t is _PVECTOR:
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
    that is the same for any dict or PMap with these keys. A dict is rebuilt
    in its own insertion order, which is part of its structure.

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
    {'b': [20.0, 30.0], 'a': (10.0, None)}
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


# fgrad.compilers.treegen installs itself here: structures met again and again (a
# model, its gradients, an optimiser's state) are flattened and rebuilt by
# code generated for them.
_fast: Any = None


def _flatten(x: Any, leaves: list[Any]) -> TreeDef:
    t = type(x)
    kind = _kind_of_type(id(t)) or _classify(x)
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
    node_type = _node_type_of(id(t)) or t
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
        kind = _kind_of_type(id(type(x))) or _classify(x)
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
                node_type = _node_type_of(id(type(x))) or type(x)
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
