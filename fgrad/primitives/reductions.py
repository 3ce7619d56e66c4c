"""Reductions: ``sum`` and ``dot`` as one n-ary node each, and ``mean``.

``builtins.sum`` over n nodes builds n - 1 ``add`` nodes; ``fg.sum`` builds
one, and ``fg.dot`` one per neuron instead of 2n. The reverse pass itself
combines cotangents with these two primitives (``fgrad.transforms.graph``).
"""

from __future__ import annotations

import builtins
import numbers
import operator
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from fgrad.engine import errors
from fgrad.engine.core import Expr, Primitive, _is_array, bind
from fgrad.primitives.basic import div, doctests, own

__all__ = ["sum", "dot", "mean", "sum_p", "dot_p"]


def _sum_tangents(dxs: tuple[Any, ...]) -> Any:
    present = [d for d in dxs if d is not None]
    if len(present) == 1:
        return present[0]
    return bind(sum_p, *present) if present else None


def _plain_sum(xs: tuple[float, ...]) -> float:
    # Left to right from the first term (not from 0.0, which would turn a
    # lone -0.0 into 0.0); builtins.sum runs the loop in C.
    return builtins.sum(xs[1:], xs[0]) if xs else 0.0


sum_p = Primitive(
    "sum",
    impl=lambda *xs: _plain_sum(xs),
    vjp=lambda g, out, *xs: (g,) * len(xs),
    jvp=lambda dxs, out, *xs: _sum_tangents(dxs),
    doc="""``sum(x1, ..., xn)``: the n terms added left to right from the first,
as one node: what ``fg.sum`` builds. No terms give 0.0, and a lone -0.0
stays -0.0.

Derivative: 1 in every term (the reverse pass hands the output's
cotangent to each). IEEE: ``inf + -inf`` is nan; a nan term gives nan.

>>> import fgrad as fg
>>> sum_p(1.0, 2.0, 3.5), sum_p(-0.0), fg.grad(lambda x: fg.sum([x, x, 2.0]))(1.0)
(6.5, -0.0, 2.0)
""",
)


# dot(ws, xs[, bias]): the arguments are laid out as (w1..wn, x1..xn[, b]); an
# odd count means a bias is present. One node per neuron instead of 2n.


def _dot_impl(*a: float) -> float:
    n = len(a) // 2
    # sum over map(mul) runs the loop in C and adds left to right like
    # ``total += w * x`` would.
    return builtins.sum(map(operator.mul, a[:n], a[n : 2 * n]), a[-1] if len(a) % 2 else 0.0)


def _dot_vjp(g: Any, out: Any, *a: Any) -> tuple[Any, ...]:
    # Deferred products (g, x) rather than g * x: the reverse pass fuses all
    # contributions to one weight (one per example) into a single dot.
    n = len(a) // 2
    cts = (*zip(repeat(g, n), a[n : 2 * n]), *zip(repeat(g, n), a[:n]))
    return cts + (g,) if len(a) % 2 else cts


def _dot_jvp(dxs: tuple[Any, ...], out: Any, *a: Any) -> Any:
    n = len(a) // 2
    left: list[Any] = []
    right: list[Any] = []
    for i in range(n):
        if dxs[i] is not None:
            left.append(dxs[i])
            right.append(a[n + i])
        if dxs[n + i] is not None:
            left.append(a[i])
            right.append(dxs[n + i])
    bias = dxs[-1] if len(a) % 2 else None
    if not left:
        return bias
    args = left + right + ([bias] if bias is not None else [])
    return bind(dot_p, *args)


dot_p = Primitive(
    "dot",
    impl=_dot_impl,
    vjp=_dot_vjp,
    jvp=_dot_jvp,
    products=True,
    doc="""``dot(w1, ..., wn, x1, ..., xn[, b])``: ``b + w1 * x1 + ... + wn * xn``
as one node: what ``fg.dot`` builds. The arguments are laid out flat; an
odd count means the last one is the bias b. The products are added left
to right, starting from b (or 0.0).

Derivatives: ``xi`` in ``wi``, ``wi`` in ``xi`` and 1 in b. The reverse
pass keeps ``g * xi`` as a deferred product, so that the contributions of
many examples to one weight fuse into a single dot. IEEE: ``0 * inf`` is
nan; overflow gives inf.

>>> import fgrad as fg
>>> dot_p(1.0, 2.0, 3.0, 4.0, 0.5), fg.grad(lambda w: fg.dot([w, 1.0], [3.0, 4.0]))(2.0)
(11.5, 3.0)
""",
)


def sum(xs: Iterable[Any]) -> Any:  # noqa: A001 - the maths name, as in numpy
    """Sum of an iterable as ONE n-ary node (``builtins.sum`` makes n - 1).

    Args:
        xs: floats and/or nodes.

    Returns:
        A float (0.0 for no terms), or a node. Its derivative is 1 in every
        term: the backward pass hands ``g`` to each.

    >>> sum([1.0, 2.0, 3.5])
    6.5
    """
    whole = getattr(xs, "_fgrad_sum", None)
    if whole is not None:
        return whole()  # vmap's batched result: one node
    terms = _scalars("sum", "xs", xs)
    if not terms:
        return 0.0
    return bind(sum_p, *terms)


_SCALAR_TYPES = frozenset({float, int, Expr})


def _scalars(name: str, what: str, xs: Any) -> tuple[Any, ...]:
    """``tuple(xs)``, checked to hold numbers or nodes (in one C pass)."""
    t = type(xs)
    terms: tuple[Any, ...]
    if t is tuple:
        terms = xs
    elif t is list:
        terms = tuple(xs)
    else:
        try:
            if isinstance(xs, (str, bytes)):
                raise TypeError
            terms = tuple(xs)
        except TypeError:
            raise TypeError(
                f"{name}: {what} must be an iterable of numbers (a list or tuple), got "
                f"{errors.describe(xs)}; for one number x, pass [x]"
            ) from None
    if not _SCALAR_TYPES.issuperset(map(type, terms)):
        for k, t in enumerate(terms):
            if _is_array(t):
                raise errors.array_argument(f"{name}: {what}[{k}]", t)
            if type(t) is not Expr and not isinstance(t, numbers.Real):
                raise TypeError(
                    f"{name}: {what}[{k}] is {errors.describe(t)}, not a number; {name} takes "
                    "numbers or traced values (for nested lists, flatten them first: fg.tree_leaves)"
                )
    return terms


def mean(xs: Iterable[Any]) -> Any:
    """Arithmetic mean: ``fg.sum(xs) / len(xs)`` (two nodes). Its derivative
    is ``1 / n`` in each of the n terms; no terms raise a ValueError.

    >>> mean([1.0, 2.0, 6.0])
    3.0
    """
    whole = getattr(xs, "_fgrad_sum", None)
    if whole is not None:  # vmap's batched result: one node, its items never made
        return div(whole(), float(len(xs)))  # type: ignore[arg-type]
    terms = _scalars("mean", "xs", xs)
    if not terms:
        raise ValueError("mean: xs is empty; the mean of no values is undefined")
    return div(bind(sum_p, *terms), float(len(terms)))


def dot(ws: Iterable[Any], xs: Iterable[Any], bias: Any = None) -> Any:
    """``bias + sum(w * x)`` as one node: a neuron's weighted sum.

    Args:
        ws: weights (floats or nodes).
        xs: inputs, as many as ``ws``.
        bias: optional term added first, as a neuron's bias.

    Returns:
        A float (0.0 for no terms and no bias), or one node. Its
        derivatives: ``x`` in each weight, ``w`` in each input, 1 in the bias.

    >>> dot([1.0, 2.0], [3.0, 4.0], bias=0.5)
    11.5
    """
    ws, xs = _scalars("dot", "ws", ws), _scalars("dot", "xs", xs)
    if bias is not None and type(bias) is not Expr and not isinstance(bias, numbers.Real):
        raise TypeError(f"dot: bias is {errors.describe(bias)}, not a number; pass a number or None")
    if len(ws) != len(xs):
        raise ValueError(
            f"dot: ws has {len(ws)} entries but xs has {len(xs)}; pass sequences of the same length"
        )
    if bias is None:
        return bind(dot_p, *ws, *xs) if ws else 0.0
    return bind(dot_p, *ws, *xs, bias)


own(sum_p, dot_p)

__test__ = doctests(sum=sum_p, dot=dot_p)
