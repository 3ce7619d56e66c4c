"""The shape of a pytree: :class:`TreeDef`, and what reads one.

Everything here walks TreeDefs without recursion (with an explicit stack),
so it serves structures of any depth.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["TreeDef", "LEAF", "structure_mismatch", "tree_paths", "treedef_equal"]

# Container kinds. The kind is stored in the TreeDef instead of the type
# where two types share a layout (dict/PMap, list/PVector) so that
# ``structure_mismatch`` can treat them alike while unflatten still rebuilds
# the original type from ``TreeDef.node_type``.
_LEAF = "leaf"
_NONE = "none"
_TUPLE = "tuple"
_NAMEDTUPLE = "namedtuple"
_LIST = "list"
_MAP = "map"
_DATACLASS = "dataclass"
_UNSUPPORTED = "unsupported"  # never in a TreeDef: flatten refuses it


class TreeDef(NamedTuple):
    """The shape of a pytree: container types, keys, static fields; no leaves.

    TreeDefs are hashable and compare structurally, so they can key caches.
    ``==`` recurses in C and fails on very deep structures (and treats
    ``1``, ``1.0`` and ``True`` as the same static value): compare with
    :func:`treedef_equal` and key caches with :func:`treedef_key`.
    """

    kind: str
    node_type: Any  # the container's class (None for a leaf)
    meta: Any  # dict keys, dataclass field names and static values
    children: tuple[TreeDef, ...]
    num_leaves: int

    def __repr__(self) -> str:
        out: list[str] = []
        stack: list[Any] = [self]  # TreeDefs to write, and the text between them
        while stack:
            item = stack.pop()
            if type(item) is str:
                out.append(item)
            elif item.kind == _LEAF:
                out.append("*")
            else:
                out.append(_type_name(item) + "(")
                stack.append(")")
                kids = item.children
                if type(kids) is _Leaves:
                    out.append(", ".join(["*"] * len(kids)))
                    continue
                for i in range(len(kids) - 1, -1, -1):
                    stack.append(kids[i])
                    if i:
                        stack.append(", ")
        return "".join(out)


TreeDef.__module__ = "fgrad"  # its public home (fg.TreeDef): pickles name it there


class _Leaves(tuple[TreeDef, ...]):
    """Children that are all leaves (a vector of numbers), marked by their
    type so that walks take them in one step. Equal to, and hashing like,
    the plain tuple of leaves."""

    __slots__ = ()


LEAF = TreeDef(_LEAF, None, None, (), 1)
_new_tuple = tuple.__new__


# Safe text for messages -------------------------------------------------------


def _safe_repr(x: Any, limit: int = 0) -> str:
    """repr(x) for a message or path, whatever x's ``__repr__`` does."""
    try:
        text = repr(x)
        if type(text) is not str:
            raise TypeError
    except Exception:  # noqa: BLE001 - a hostile or broken __repr__ must not hide the real error
        text = f"<{type(x).__name__} whose repr failed>"
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


def _type_name(td: TreeDef) -> str:
    try:
        name = getattr(td.node_type, "__name__", td.kind)
    except Exception:  # noqa: BLE001 - a node type (in a TreeDef made by hand) whose __name__ raises
        name = None
    return name if type(name) is str else str(td.kind)


def _short(td: TreeDef) -> str:
    return _safe_repr(td, 200)


# Runs of leaves -------------------------------------------------------------

_NUMBER_TYPES = frozenset({float, int})
_LEAF_RUNS_KEPT = 256  # runs up to this length are shared, a bounded cache; longer ones are made
_leaf_runs: dict[int, _Leaves] = {}


def _all_numbers(kids: list[Any]) -> bool:
    return set(map(type, kids)) <= _NUMBER_TYPES


def _leaf_defs(n: int) -> _Leaves:
    defs = _leaf_runs.get(n)
    if defs is None:
        defs = _Leaves((LEAF,) * n)
        if n <= _LEAF_RUNS_KEPT:
            _leaf_runs[n] = defs
    return defs


# Reading TreeDefs -------------------------------------------------------------


def _check_treedef(name: str, arg: str, td: Any) -> None:
    if not isinstance(td, TreeDef):
        raise TypeError(
            f"{name}: {arg} must be a TreeDef (from tree_flatten or tree_structure), got {type(td).__name__}"
        )


def treedef_equal(a: TreeDef, b: TreeDef) -> bool:
    """``a == b`` at any depth (``==`` itself recurses in C and fails on very
    deep structures). A key or static value whose comparison raises makes
    the structures unequal.

    >>> from fgrad.engine.tree import tree_structure
    >>> treedef_equal(tree_structure([1.0, {"a": 2.0}]), tree_structure([3.0, {"a": 4.0}]))
    True
    """
    _check_treedef("treedef_equal", "a", a)
    _check_treedef("treedef_equal", "b", b)
    try:
        return a is b or bool(a == b)
    except RecursionError:
        pass
    except Exception:  # noqa: BLE001 - a static value that cannot compare (an array)
        return False
    stack = [(a, b)]
    try:
        while stack:
            x, y = stack.pop()
            if x is y:
                continue
            if (
                x.kind != y.kind
                or x.num_leaves != y.num_leaves
                or len(x.children) != len(y.children)
                or x.node_type != y.node_type
                or x.meta != y.meta
            ):
                return False
            stack.extend(zip(x.children, y.children))
    except Exception:  # noqa: BLE001 - as above
        return False
    return True


def _normal(td: TreeDef) -> Any:
    """A key under which dict ~ PMap and list ~ PVector compare equal."""
    if td.kind in (_MAP, _LIST):
        return (td.kind, td.meta)
    return (td.kind, td.node_type, td.meta)


def structure_mismatch(a: TreeDef, b: TreeDef) -> str | None:
    """Where two structures differ, as a readable path and reason, or None.

    A dict and a PMap with the same keys match, and so do a list and a
    PVector of the same length.

    >>> from fgrad.engine.tree import tree_structure
    >>> structure_mismatch(tree_structure({"a": [1.0]}), tree_structure({"a": [1.0, 2.0]}))
    "at ['a']: list of length 1 vs list of length 2"
    """
    _check_treedef("structure_mismatch", "a", a)
    _check_treedef("structure_mismatch", "b", b)
    try:
        if a is b or a == b:
            return None  # the common case, compared as tuples without a Python walk
    except Exception:  # noqa: BLE001 - too deep for ==, or values that cannot compare: walked below
        pass
    # (x, y, where) with where = (label, parent's where): paths are spelt out only for a mismatch.
    stack: list[tuple[TreeDef, TreeDef, Any]] = [(a, b, None)]
    while stack:
        x, y, where = stack.pop()
        if x is y:
            continue
        try:
            differ = _normal(x) != _normal(y) or len(x.children) != len(y.children)
            reason = ""
        except Exception as e:  # noqa: BLE001 - a static value or key whose == raises
            differ, reason = True, f" (their static values or keys cannot be compared: {type(e).__name__})"
        if differ:
            parts = []
            while where is not None:
                parts.append(where[0])
                where = where[1]
            path = "".join(reversed(parts))
            if len(path) > 120:  # a deep tree: the start and the end of the path
                path = f"{path[:50]}...{path[-60:]}"
            return f"at {path or 'the root'}: {_describe(x)} vs {_describe(y)}{reason}"
        stack.extend((cx, cy, (lab, where)) for cx, cy, lab in zip(x.children, y.children, _child_labels(x)))
    return None


def _describe(td: TreeDef) -> str:
    if td.kind == _LEAF:
        return "a leaf"
    name = _type_name(td)
    if td.kind == _MAP:
        keys = [_safe_repr(k, 40) for k in td.meta[:8]]
        more = f" and {len(td.meta) - 8} more" if len(td.meta) > 8 else ""
        return f"{name} with keys [{', '.join(keys)}]{more}"
    if td.kind == _DATACLASS:
        static = ", ".join(f"{n}={_safe_repr(v, 40)}" for n, v in zip(td.meta[1], td.meta[2]))
        return f"{name}({static})" if static else name
    if td.kind == _NONE:
        return "None"
    return f"{name} of length {len(td.children)}"


def _child_labels(td: TreeDef) -> list[str]:
    n = len(td.children)
    labels: list[str] = []
    if td.kind == _MAP:
        labels = [f"[{_safe_repr(k)}]" for k in td.meta]
    elif td.kind == _DATACLASS:
        labels = [f".{name}" for name in td.meta[0]]
    elif td.kind == _NAMEDTUPLE:
        labels = [f".{name}" for name in getattr(td.node_type, "_fields", ())]
    # (A TreeDef made by hand may not add up: its children keep index labels.)
    return labels if len(labels) == n else [f"[{i}]" for i in range(n)]


def tree_paths(treedef: TreeDef) -> list[str]:
    """Readable paths of the leaves of a structure, in flatten order.

    >>> from fgrad.engine.tree import tree_structure
    >>> tree_paths(tree_structure({"w": [1.0, 2.0], "b": 0.0}))
    ["['b']", "['w'][0]", "['w'][1]"]
    """
    _check_treedef("tree_paths", "treedef", treedef)
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
