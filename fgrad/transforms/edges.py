"""What crosses a transform's edges: which arguments it differentiates, the
leaves it turns into input nodes, and the outputs it accepts.

Every transform of :mod:`fgrad.transforms` (and jit, and the library's
helpers) checks what the user passed with these functions, so that misuse
gets one clear message wherever it happens.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from fgrad.engine import errors
from fgrad.engine.core import EscapedNodeError, Expr, _escaped, make_node
from fgrad.engine.trace import Trace
from fgrad.engine.tree import (
    TreeDef,
    structure_mismatch,
    tree_flatten,
    tree_paths,
    tree_unflatten,
)

ArgNums = int | Sequence[int]


def _norm_argnums(name: str, argnums: Any, nargs: int) -> tuple[int, ...]:
    single = isinstance(argnums, int) and not isinstance(argnums, bool)
    items = (argnums,) if single else argnums
    if not isinstance(items, (tuple, list)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in items
    ):
        raise TypeError(f"{name}: argnums must be an int or a tuple of ints, got {argnums!r}")
    if not items:
        raise ValueError(f"{name}: argnums is empty; name at least one argument to differentiate")
    out = []
    for i in items:
        if nargs == 0:
            raise ValueError(
                f"{name}: argnums={argnums!r} but the function was called with no positional "
                "arguments; pass the argument(s) to differentiate positionally"
            )
        if not -nargs <= i < nargs:
            raise ValueError(
                f"{name}: argnums={argnums!r} but the function was called with {nargs} "
                f"positional argument(s); pick indices from 0 to {nargs - 1}"
            )
        out.append(i % nargs)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: argnums={argnums!r} names an argument twice")
    return tuple(out)


def check_callable(name: str, f: Any) -> None:
    """Refuse a non-callable at once, not at the first call."""
    if not callable(f):
        raise TypeError(f"{name}: f must be a function (a callable), got {errors.describe(f)}")


def check_leaf(name: str, leaf: Any, where: str) -> Any:
    """A differentiable leaf as a float (or a node of an outer trace)."""
    if type(leaf) is Expr:
        if not leaf.trace.live:
            raise EscapedNodeError(
                f"{name}: the input at {where} is a node of {leaf.trace.name}, which has "
                "returned; pass its value (float(x)) or call the transforms inside it"
            )
        return leaf
    if type(leaf) is float:
        return leaf
    if isinstance(leaf, numbers.Real) and not isinstance(leaf, bool):
        try:
            return float(leaf)
        except OverflowError:
            raise ValueError(f"{name}: the input at {where} is {errors.huge_int(leaf)}") from None
    fix = (
        "use a float (True/False are not numbers here)"
        if isinstance(leaf, bool)
        else "pass only real numbers in differentiated arguments; put other data in an "
        "argument not listed in argnums (it is then a constant)"
    )
    raise TypeError(f"{name}: the input at {where} is {errors.describe(leaf)}, not a real number; {fix}")


def _leaf_where(argnums: tuple[int, ...], treedef: TreeDef, k: int) -> str:
    path = tree_paths(treedef)[k]  # "[i]..." over the tuple of differentiated args
    i = int(path[1 : path.index("]")])
    return f"argument {argnums[i]}{path[path.index(']') + 1 :]}"


def trace_inputs(
    tr: Trace, name: str, args: tuple[Any, ...], argnums: tuple[int, ...]
) -> tuple[tuple[Any, ...], list[Expr], TreeDef]:
    """Replace the leaves of ``args[argnums]`` by input nodes of ``tr``.

    Returns the new argument tuple, the input nodes (in flatten order) and the
    structure of the differentiated arguments.
    """
    leaves, treedef = tree_flatten(tuple(args[i] for i in argnums))
    values = []
    for k, leaf in enumerate(leaves):
        if type(leaf) is float or (type(leaf) is Expr and leaf.trace.live):
            values.append(leaf)
        else:  # (where it is: only worked out for a leaf that may need an error)
            values.append(check_leaf(name, leaf, _leaf_where(argnums, treedef, k)))
    nodes = [make_node(tr, v, None, ()) for v in values]
    tr.in_tree = treedef
    diff = tree_unflatten(treedef, nodes)
    new_args = list(args)
    for i, sub in zip(argnums, diff):
        new_args[i] = sub
    return tuple(new_args), nodes, treedef


def lower(tr: Trace, x: Any) -> Any:
    """The value of ``x`` one level below ``tr`` (x itself if not of ``tr``).

    A node of a trace that has closed cannot leave a transform: it would
    carry a stale graph (and a silent zero derivative) out of it.
    """
    if type(x) is Expr:
        if x.trace is tr:
            return x.value
        if not x.trace.live:
            raise _escaped(x.trace)
    return x


def lower_tree(tr: Trace, tree: Any) -> Any:
    """``lower`` applied to every leaf, keeping the tree's container types."""
    leaves, td = tree_flatten(tree)
    return tree_unflatten(td, [lower(tr, x) for x in leaves])


def check_scalar(name: str, out: Any, hint: str) -> Any:
    if type(out) is Expr or type(out) is float:
        return out
    if isinstance(out, numbers.Real) and not isinstance(out, bool):
        try:
            return float(out)
        except OverflowError:
            raise ValueError(f"{name}: the output is {errors.huge_int(out)}") from None
    sized = isinstance(out, (list, tuple, dict)) or hasattr(out, "__len__")
    if sized and not isinstance(out, (str, bytes)):
        try:
            size = f"a {type(out).__name__} of {len(out)}"
        except TypeError:
            size = f"a {type(out).__name__}"
    else:
        size = f"a {type(out).__name__}"
    raise TypeError(f"{name} needs a scalar output, got {size}; {hint}")


def split_aux(name: str, result: Any) -> tuple[Any, Any]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a {type(result).__name__}" + (
            f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""
        )
        raise TypeError(
            f"{name}(..., has_aux=True): the function must return a pair (output, aux), "
            f"got {got}; return `out, aux` or drop has_aux"
        )
    return result[0], result[1]


def _outputs(name: str, out: Any) -> tuple[list[Any], TreeDef]:
    """Flatten a function's output, checking every leaf is a scalar."""
    leaves, td = tree_flatten(out)
    paths: list[str] | None = None
    for k, leaf in enumerate(leaves):
        if type(leaf) is not Expr and not (isinstance(leaf, numbers.Real) and not isinstance(leaf, bool)):
            paths = paths or tree_paths(td)
            raise TypeError(
                f"{name}: the output at {paths[k] or 'the root'} is a {type(leaf).__name__}, "
                "not a scalar; return numbers (or pytrees of numbers) from the function"
            )
    return leaves, td


def _matching_leaves(name: str, what: str, tree: Any, like: TreeDef, like_name: str) -> list[Any]:
    """The leaves of ``tree``, which must have the structure ``like``."""
    leaves, td = tree_flatten(tree)
    where = structure_mismatch(like, td)
    if where is not None:
        raise ValueError(
            f"{name}: {what} must have the structure of {like_name}; they differ {where} "
            f"({like_name} vs {what})"
        )
    paths = tree_paths(td)
    return [check_leaf(name, x, f"{what}{p}") for x, p in zip(leaves, paths)]


def _all_args(args: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(range(len(args)))
