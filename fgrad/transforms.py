"""Transformations of Python functions: grad, vjp, jvp, linearize, trace.

Each transform opens a trace, replaces the leaves of the differentiated
arguments by input nodes of that trace, runs the function, and walks the tape
the function left. Results come back in the structure of the inputs, made
persistent (dict and PMap give PMap, list and PVector give PVector).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from . import errors
from .core import EscapedNodeError, Expr, Trace, _escaped, make_node, traced
from .graph import backward, forward
from .tree import (
    TreeDef,
    structure_mismatch,
    tree_flatten,
    tree_paths,
    tree_unflatten,
    unflatten_persistent,
)

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "trace", "lower"]

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


def value_and_grad(f: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False) -> Callable[..., Any]:
    """A function that returns ``f``'s value and its gradient.

    Args:
        f: a function of pytrees of real numbers returning a scalar (or
            ``(scalar, aux)`` with ``has_aux``).
        argnums: which positional argument(s) to differentiate; the others
            are constants.
        has_aux: ``f`` returns ``(out, aux)``; aux comes back unchanged.

    Returns:
        A function returning ``(value, grads)``, or ``((value, aux), grads)``;
        ``grads`` has the structure of the differentiated argument (a tuple of
        them when ``argnums`` is a tuple), made persistent.

    >>> value_and_grad(lambda x: x * x)(3.0)
    (9.0, 6.0)
    """
    check_callable("value_and_grad", f)
    name = getattr(f, "__name__", "f")

    @functools.wraps(f)
    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        nums = _norm_argnums("grad", argnums, len(args))

        def body(tr: Trace) -> tuple[Any, Any]:
            new_args, nodes, treedef = trace_inputs(tr, "grad", args, nums)
            result = f(*new_args, **kwargs)
            out, aux = split_aux("grad", result) if has_aux else (result, None)
            out = check_scalar("grad", out, "reduce it with fg.sum, or use fg.jacobian for several outputs")
            cts = backward(tr, [(out, 1.0)])
            grads = unflatten_persistent(treedef, [0.0 if (c := cts[n.seq]) is None else c for n in nodes])
            value = lower(tr, out)
            if has_aux:
                value = (value, lower_tree(tr, aux))
            return value, grads

        value, grads = traced("grad", body)
        if isinstance(argnums, int):
            grads = grads[0]
        return value, grads

    value_and_grad_f.__name__ = f"value_and_grad({name})"
    return value_and_grad_f


def grad(f: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False) -> Callable[..., Any]:
    """The gradient of a scalar function, as a new function.

    Args:
        f: a function of pytrees of real numbers returning a scalar node or
            float (or ``(scalar, aux)`` with ``has_aux``).
        argnums: which positional argument(s) to differentiate.
        has_aux: ``f`` returns ``(out, aux)``; the result is ``(grads, aux)``.

    Returns:
        A function returning gradients in the structure of the differentiated
        argument(s): dict and PMap give PMap, list and PVector give PVector,
        tuples, namedtuples and dataclasses keep their type, a number gives a
        float. Nest it to any order: ``grad(grad(f))``.

    >>> grad(lambda x: x ** 3)(2.0)
    12.0
    >>> grad(grad(lambda x: x ** 3))(2.0)
    12.0
    """
    check_callable("grad", f)
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args: Any, **kwargs: Any) -> Any:
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    grad_f.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    return grad_f


def trace(f: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``f`` on input nodes and return its output node(s), to look at.

    Every positional argument is traced (its leaves must be real numbers).
    The returned nodes belong to a closed trace: inspect them (``.value``,
    ``fg.count_nodes``, graph exports), but compute with them no more.

    >>> out = trace(lambda x, y: x * y + 1.0)(2.0, 3.0)
    >>> out.prim.name, out.value
    ('add', 7.0)
    """
    check_callable("trace", f)

    @functools.wraps(f)
    def traced_f(*args: Any, **kwargs: Any) -> Any:
        def body(tr: Trace) -> Any:
            new_args, _, _ = trace_inputs(tr, "trace", args, tuple(range(len(args))))
            return f(*new_args, **kwargs)

        return traced("trace", body)

    return traced_f


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


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward mode: ``f``'s output and its directional derivative.

    Args:
        f: a function of pytrees of real numbers returning a pytree of scalars.
        primals: a tuple of ``f``'s positional arguments.
        tangents: a tuple of the same structure: the direction.

    Returns:
        ``(out, out_tangent)``, both in the structure of ``f``'s output.

    >>> jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    (6.0, 3.0)
    """
    check_callable("jvp", f)
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(
            "jvp: primals and tangents must be tuples of the function's arguments, "
            f"e.g. jvp(f, (x,), (dx,)); got {type(primals).__name__} and {type(tangents).__name__}"
        )
    primals = tuple(primals)

    def body(tr: Trace) -> tuple[Any, Any]:
        new_args, nodes, td = trace_inputs(tr, "jvp", primals, _all_args(primals))
        dxs = _matching_leaves("jvp", "tangents", tuple(tangents), td, "primals")
        outs, out_td = _outputs("jvp", f(*new_args))
        dts = forward(tr, list(zip(nodes, dxs)))
        values = [lower(tr, o) for o in outs]
        douts = [_tangent_of(tr, o, dts) for o in outs]
        return tree_unflatten(out_td, values), tree_unflatten(out_td, douts)

    return traced("jvp", body)


def _tangent_of(tr: Trace, out: Any, dts: list[Any]) -> Any:
    if type(out) is Expr and out.trace is tr:
        d = dts[out.seq]
        return 0.0 if d is None else d
    return 0.0


def linearize(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
    """``f``'s output and its Jacobian-vector product as a reusable function.

    The graph is traced once; each call of the returned ``f_jvp(*tangents)``
    is one forward pass over it. ``f_jvp`` is pure.

    >>> out, f_jvp = linearize(lambda x: x ** 3, 2.0)
    >>> out, f_jvp(1.0), f_jvp(0.5)
    (8.0, 12.0, 6.0)
    """
    check_callable("linearize", f)

    def body(tr: Trace) -> tuple[Any, ...]:
        new_args, nodes, td = trace_inputs(tr, "linearize", primals, _all_args(primals))
        outs, out_td = _outputs("linearize", f(*new_args))
        return tr, nodes, td, outs, out_td, tr.tape, [lower(tr, o) for o in outs]

    tr, nodes, td, outs, out_td, tape, values = traced("linearize", body)
    assert tape is not None

    def f_jvp(*tangents: Any) -> Any:
        dxs = _matching_leaves("linearize", "tangents", tangents, td, "primals")
        dts = forward(tr, list(zip(nodes, dxs)), tape=tape)
        return tree_unflatten(out_td, [_tangent_of(tr, o, dts) for o in outs])

    return tree_unflatten(out_td, values), f_jvp


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
    """``f``'s output and its vector-Jacobian product as a reusable function.

    Returns:
        ``(out, f_vjp)`` (``(out, f_vjp, aux)`` with ``has_aux``), where
        ``f_vjp(cotangent)`` takes a cotangent in the structure of ``out`` and
        returns a tuple with one cotangent per primal, each in that primal's
        structure (made persistent). ``f_vjp`` is pure: call it many times.

    >>> out, f_vjp = vjp(lambda x, y: x * y, 2.0, 3.0)
    >>> out, f_vjp(1.0), f_vjp(2.0)
    (6.0, (3.0, 2.0), (6.0, 4.0))
    """
    check_callable("vjp", f)

    def body(tr: Trace) -> tuple[Any, ...]:
        new_args, nodes, td = trace_inputs(tr, "vjp", primals, _all_args(primals))
        result = f(*new_args)
        out, aux = split_aux("vjp", result) if has_aux else (result, None)
        outs, out_td = _outputs("vjp", out)
        values = [lower(tr, o) for o in outs]
        return tr, nodes, td, outs, out_td, tr.tape, values, lower_tree(tr, aux) if has_aux else None

    tr, nodes, td, outs, out_td, tape, values, aux = traced("vjp", body)
    assert tape is not None

    def f_vjp(cotangent: Any) -> tuple[Any, ...]:
        gs = _matching_leaves("vjp", "cotangent", cotangent, out_td, "the output")
        cts = backward(tr, list(zip(outs, gs)), tape=tape)
        result: tuple[Any, ...] = unflatten_persistent(
            td, [0.0 if (c := cts[n.seq]) is None else c for n in nodes]
        )
        return result

    out_tree = tree_unflatten(out_td, values)
    return (out_tree, f_vjp, aux) if has_aux else (out_tree, f_vjp)
