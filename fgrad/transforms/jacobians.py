"""Jacobians and Hessians of functions of pytrees of scalars.

``jacrev`` traces once and runs one reverse pass per output leaf; ``jacfwd``
traces once and runs one forward pass per input leaf. Both return the
output's structure outside and the differentiated argument's structure
inside, made persistent: ``jacobian(g)(params)["y"]["w"] == dy/dw``.
``hessian(f) = jacfwd(grad(f))``: ``H["w"]["b"] == d2f / dw db``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fgrad.engine.core import Expr
from fgrad.engine.trace import Trace, traced
from fgrad.engine.tree import TreeDef, unflatten_persistent
from fgrad.transforms.autodiff import grad
from fgrad.transforms.edges import ArgNums, _norm_argnums, _outputs, check_callable, trace_inputs
from fgrad.transforms.graph import backward, forward

__all__ = ["jacobian", "jacrev", "jacfwd", "hessian"]


def _split(td: TreeDef, flat: list[Any], single: bool) -> Any:
    tree = unflatten_persistent(td, flat)
    return tree[0] if single else tree


def jacrev(f: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """The Jacobian of ``f`` by reverse mode (one backward pass per output).

    Args:
        f: a function returning a scalar or a pytree of scalars.
        argnums: the argument(s) to differentiate.

    Returns:
        A function returning ``f``'s output structure with, at each leaf, the
        gradient of that output in the structure of the argument(s).

    >>> jacrev(lambda x, y: (x * y, x + y), argnums=(0, 1))(2.0, 3.0)
    ((3.0, 2.0), (1.0, 1.0))
    """

    def rows(tr: Trace, nodes: list[Expr], outs: list[Any]) -> list[list[Any]]:
        result = []
        for out in outs:
            cts = backward(tr, [(out, 1.0)])
            result.append([0.0 if (c := cts[n.seq]) is None else c for n in nodes])
        return result

    return _jacobian("jacrev", f, argnums, rows)


def jacfwd(f: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """The Jacobian of ``f`` by forward mode (one forward pass per input leaf).

    Same result structure as :func:`jacrev`; cheaper when there are fewer
    inputs than outputs.

    >>> jacfwd(lambda x: {"double": 2.0 * x, "square": x * x})(3.0)["square"]
    6.0
    """

    def rows(tr: Trace, nodes: list[Expr], outs: list[Any]) -> list[list[Any]]:
        columns = []
        for node in nodes:
            dts = forward(tr, [(node, 1.0)])
            columns.append([_tangent(tr, o, dts) for o in outs])
        return [[col[i] for col in columns] for i in range(len(outs))]

    return _jacobian("jacfwd", f, argnums, rows)


def _jacobian(
    name: str,
    f: Callable[..., Any],
    argnums: ArgNums,
    rows: Callable[[Trace, list[Expr], list[Any]], list[list[Any]]],
) -> Callable[..., Any]:
    """Trace ``f`` once; ``rows`` gives, per output leaf, its derivatives
    with respect to the input leaves; arrange them as output-of-inputs."""
    check_callable(name, f)

    @functools.wraps(f)
    def jac(*args: Any, **kwargs: Any) -> Any:
        nums = _norm_argnums(name, argnums, len(args))
        single = isinstance(argnums, int)

        def body(tr: Trace) -> Any:
            new_args, nodes, td = trace_inputs(tr, name, args, nums)
            outs, out_td = _outputs(name, f(*new_args, **kwargs))
            table = rows(tr, nodes, outs)
            return unflatten_persistent(out_td, [_split(td, row, single) for row in table])

        return traced(name, body)

    return jac


def _tangent(tr: Any, out: Any, dts: list[Any]) -> Any:
    if type(out) is Expr and out.trace is tr and dts[out.seq] is not None:
        return dts[out.seq]
    return 0.0


jacobian = jacrev


def hessian(f: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """The matrix of second derivatives of a scalar function.

    Computed forward-over-reverse (``jacfwd(grad(f))``). The result nests
    the argument's structure in itself: ``H["w"]["b"] == d2f / dw db``.

    >>> hessian(lambda p: p["a"] * p["a"] * p["b"])({"a": 1.0, "b": 2.0})["a"]["b"]
    2.0
    """
    check_callable("hessian", f)
    return jacfwd(grad(f, argnums), argnums)
