"""Flatten: a recursive walk for speed, handing over to a walk with an
explicit stack for trees deeper than Python's stack allows (and to say
where a tree goes wrong). Rebuilding is in :mod:`.build`."""

from __future__ import annotations

from typing import Any

from pyrsistent import pvector

from fgrad.engine.tree.keys import _sorted_keys
from fgrad.engine.tree.kinds import (
    _PER_INSTANCE,
    _classify,
    _dataclass_info,
    _instance_node_type,
    _kinds,
    _node_types,
    _Refused,
    _unsupported,
)
from fgrad.engine.tree.shape import (
    _DATACLASS,
    _LEAF,
    _MAP,
    _NAMEDTUPLE,
    _NONE,
    _UNSUPPORTED,
    LEAF,
    TreeDef,
    _all_numbers,
    _leaf_defs,
    _new_tuple,
    _safe_repr,
)

__all__ = ["tree_flatten"]

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

    >>> from fgrad.engine.tree import tree_unflatten
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
