"""Transformations of Python functions: grad, vjp, jvp, linearize, trace.

Each transform opens a trace, replaces the leaves of the differentiated
arguments by input nodes of that trace, runs the function, and walks the tape
the function left. Results come back in the structure of the inputs, made
persistent (dict and PMap give PMap, list and PVector give PVector).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from fgrad.engine.core import Expr
from fgrad.engine.trace import Trace, traced
from fgrad.engine.tree import (
    tree_unflatten,
    unflatten_persistent,
)
from fgrad.transforms.edges import (
    ArgNums,
    _all_args,
    _matching_leaves,
    _norm_argnums,
    _outputs,
    check_callable,
    check_scalar,
    lower,
    lower_tree,
    split_aux,
    trace_inputs,
)
from fgrad.transforms.graph import backward, forward

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "trace"]


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
