"""vmap: write the code for one example, map it over a batch.

``vmap(f, in_axes=(None, 0, 0))(model, xs, ys)`` calls ``f(model, xs[i], ys[i])``
for every example ``i`` and returns the outputs as a tuple, one per example.
A mapped argument is a sequence of examples (a list, tuple or PVector of
pytrees, or anything indexable with a length, such as a numpy array's rows);
``None`` marks an argument shared by all examples. Because it runs ``f`` on
each example, vmap composes with every transform (grad, jvp, jit) and with
itself, in any order.

This is the portable path: a vectorised backend that evaluates a jitted
batch's graph once over arrays is planned on top of the same interface.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["vmap"]


def _axes(in_axes: Any, n: int) -> tuple[int | None, ...]:
    axes = (in_axes,) * n if in_axes is None or isinstance(in_axes, int) else tuple(in_axes)
    if len(axes) != n:
        raise ValueError(
            f"vmap: in_axes has {len(axes)} entries but the function was called with {n} "
            "positional arguments; give one entry (0 or None) per argument"
        )
    for k, ax in enumerate(axes):
        if ax is not None and (ax != 0 or isinstance(ax, bool)):
            raise ValueError(
                f"vmap: in_axes[{k}] is {ax!r}; scalar code maps over examples only, so use 0 "
                "(a sequence of examples) or None (shared by all examples)"
            )
    return axes


def vmap(f: Callable[..., Any], in_axes: Any = 0, out_axes: int = 0) -> Callable[..., tuple[Any, ...]]:
    """Map ``f`` over the examples of its mapped arguments.

    Args:
        f: a function of one example.
        in_axes: ``0`` (every argument is a sequence of examples), ``None``
            (shared), or a tuple with one of those per positional argument.
        out_axes: ``0``: the result is a tuple with one output per example.

    Returns:
        The batched function.

    >>> import fgrad as fg
    >>> vmap(lambda w, x: w * x, in_axes=(None, 0))(2.0, [1.0, 2.0, 3.0])
    (2.0, 4.0, 6.0)
    >>> fg.grad(lambda w: fg.sum(vmap(lambda w, x: w * x, in_axes=(None, 0))(w, [1.0, 2.0])))(5.0)
    3.0
    """
    if out_axes != 0 or isinstance(out_axes, bool):
        raise ValueError(f"vmap: out_axes must be 0 (a tuple of per-example outputs), got {out_axes!r}")

    @functools.wraps(f)
    def batched(*args: Any) -> tuple[Any, ...]:
        axes = _axes(in_axes, len(args))
        sizes: dict[int, int] = {}
        for k, (a, ax) in enumerate(zip(args, axes)):
            if ax is None:
                continue
            if isinstance(a, (str, bytes)) or not hasattr(a, "__len__") or not hasattr(a, "__getitem__"):
                raise TypeError(
                    f"vmap: argument {k} is mapped (in_axes 0) but is a {type(a).__name__}, not a "
                    "sequence of examples; pass a list/tuple of examples or mark it None"
                )
            sizes[k] = len(a)
        if not sizes:
            raise ValueError("vmap: every argument has in_axes None, so there is nothing to map over")
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"argument {k} has {n}" for k, n in sizes.items())
            raise ValueError(f"vmap: mapped arguments must have the same number of examples: {shown}")
        n = next(iter(sizes.values()))
        return tuple(f(*_example(args, axes, i)) for i in range(n))

    return batched


def _example(args: Sequence[Any], axes: Sequence[int | None], i: int) -> list[Any]:
    return [a if ax is None else a[i] for a, ax in zip(args, axes)]
