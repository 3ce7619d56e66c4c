"""vmap: write the code for one example, map it over a batch.

``vmap(f, in_axes=(None, 0, 0))(model, xs, ys)`` calls ``f(model, xs[i], ys[i])``
for every example ``i`` and returns the outputs as a tuple, one per example.
A mapped argument is a sequence of examples (a list, tuple or PVector of
pytrees, or anything indexable with a length, such as a numpy array's rows);
``None`` marks an argument shared by all examples. It composes with every
transform (grad, jvp, jit) and with itself, in any order.

Two backends give the same results, to rounding (numpy sums in its own order,
and its exp, log, tanh and pow may differ from ``math`` in the last bit):

- the loop (always available): ``f`` runs once per example;
- numpy (``pip install 'fgrad[numpy]'``), under jit: ``f`` is traced ONCE on
  batched leaves, nodes whose value holds the leaf of every example in a
  numpy array, so every node of the graph, forward and reverse, is one
  operation over the whole batch; the cotangents of shared arguments are
  summed over the batch, and the compiled code is numpy code (dots over
  the same inputs become matrix products, see ``fgrad.compilers.numpycode``).

The numpy backend is used when it can be: under jit, with numpy installed,
for two or more examples of one structure. A function that needs one
example at a time (a Python ``if`` on a batched value, a primitive without
a ``vectorized`` implementation, a vmap nested in a batched one) is traced
by the loop instead, as is every vmap under Taylor mode; ``backend="loop"``
asks for the loop always.

``chunk_size=N`` runs a batch N examples at a time under jit
(``fgrad.transforms.chunks``): one chunk's values in memory, forward and
reverse.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from fgrad.engine import core
from fgrad.engine.core import Expr
from fgrad.engine.trace import Trace, _active, protected
from fgrad.engine.tree import TreeDef, tree_flatten, tree_unflatten, treedef_equal
from fgrad.transforms import chunks
from fgrad.transforms.batched import (
    NOT_BATCHED,
    Batched,
    _example,
    _inside,
    batched_result,
    columns,
    trace_batch,
)
from fgrad.transforms.batching import data_p, have_numpy, is_batch

__all__ = ["vmap", "Batched", "looping"]

T = TypeVar("T")

BACKENDS = ("auto", "loop")


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


def vmap(
    f: Callable[..., Any],
    in_axes: Any = 0,
    out_axes: int = 0,
    *,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> Callable[..., tuple[Any, ...]]:
    """Map ``f`` over the examples of its mapped arguments.

    Args:
        f: a function of one example.
        in_axes: ``0`` (every argument is a sequence of examples), ``None``
            (shared), or a tuple with one of those per positional argument.
        out_axes: ``0``: the result is a tuple with one output per example.
        backend: ``"auto"`` (numpy under jit when it can, see the module
            doc) or ``"loop"``.
        chunk_size: run the batch this many examples at a time, forward
            and reverse, so that memory holds one chunk's values, not the
            batch's (see ``fgrad.transforms.chunks``). It applies under
            jit (and the transforms inside it), with numpy, to a batch of more
            than ``chunk_size`` examples that the numpy backend can run
            and that neither branches on a traced value nor uses one it
            closes over; elsewhere vmap runs as without it. A chunk holds
            two examples at least (the last one, the rest).

    Returns:
        The batched function.

    >>> import fgrad as fg
    >>> vmap(lambda w, x: w * x, in_axes=(None, 0))(2.0, [1.0, 2.0, 3.0])
    (2.0, 4.0, 6.0)
    >>> fg.grad(lambda w: fg.sum(vmap(lambda w, x: w * x, in_axes=(None, 0))(w, [1.0, 2.0])))(5.0)
    3.0
    """
    if not callable(f):
        raise TypeError(f"vmap: f must be a function (a callable), got a {type(f).__name__}")
    if out_axes != 0 or isinstance(out_axes, bool):
        raise ValueError(f"vmap: out_axes must be 0 (a tuple of per-example outputs), got {out_axes!r}")
    if backend not in BACKENDS:
        raise ValueError(f"vmap: backend must be one of {BACKENDS}, got {backend!r}")
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(
            f"vmap: chunk_size must be a positive int (examples per chunk) or None, got {chunk_size!r}"
        )

    @functools.wraps(f)
    def batched(*args: Any) -> tuple[Any, ...]:
        axes = _axes(in_axes, len(args))
        sizes: dict[int, int] = {}
        for k, (a, ax) in enumerate(zip(args, axes)):
            if ax is None:
                continue
            sequence = hasattr(a, "__len__") and hasattr(a, "__getitem__")
            if isinstance(a, (str, bytes, Mapping)) or not sequence:
                raise TypeError(
                    f"vmap: argument {k} is mapped (in_axes 0) but is a {type(a).__name__}, not a "
                    "sequence of examples; pass a list/tuple of examples (a list of dicts, say) "
                    "or mark it None in in_axes to share it"
                )
            sizes[k] = len(a)
        if not sizes:
            raise ValueError("vmap: every argument has in_axes None, so there is nothing to map over")
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"argument {k} has {n}" for k, n in sizes.items())
            raise ValueError(f"vmap: mapped arguments must have the same number of examples: {shown}")
        n = next(iter(sizes.values()))
        if backend == "auto" and chunk_size is not None and n > chunk_size and _can_chunk():
            chunked: Batched | None = _chunked_call(f, args, axes, n, chunk_size)
            if chunked is not None:
                return chunked
        if backend == "auto" and n >= 2 and _can_batch():
            out: Batched | None = _batched_call(f, args, axes, n)
            if out is not None:
                return out
        return Batched(f(*_example(args, axes, i)) for i in range(n))

    return batched


# True while jit traces a program again whose guards need the trace's exact
# values (``fgrad.compilers.numpycode.exactness``): every vmap runs its loop.
_loop_only: ContextVar[bool] = ContextVar("fgrad_vmap_loop_only", default=False)


def looping(body: Callable[[], T]) -> T:
    """``body()`` with every vmap in it running its loop."""
    saved = _loop_only.get()
    return protected(lambda: _loop_only.set(True), body, lambda: _loop_only.set(saved))


def _can_batch() -> bool:
    """Under a live jit trace (the outermost), with numpy, not debugging nans,
    not inside another batched vmap, not in Taylor mode (whose series rules
    compare coefficients, which a batch cannot)."""
    stack = _active.get()
    return (
        bool(stack)
        and stack[0].guards is not None
        and stack[0].live
        and not core.DEBUG_NANS
        and not _inside.get()
        and not _loop_only.get()
        and not _taylor(stack)
        and have_numpy()
    )


def _taylor(stack: tuple[Trace, ...]) -> bool:
    return any(t.name == "derivatives" for t in stack)


def _can_chunk() -> bool:
    """Under a live jit trace (the outermost: the rules of the transforms
    inside it then compute with its nodes, never with raw arrays), with
    numpy, not debugging nans, not inside a batched vmap (whose batch a
    chunk would pair up with its own)."""
    stack = _active.get()
    return (
        bool(stack)
        and stack[0].guards is not None
        and all(t.live for t in stack)
        and not core.DEBUG_NANS
        and not _inside.get()
        and not _loop_only.get()
        and not _taylor(stack)
        and chunks.compile_hook is not None
        and have_numpy()
    )


def _chunked_call(
    f: Callable[..., Any], args: Sequence[Any], axes: Sequence[int | None], n: int, chunk: int
) -> Batched | None:
    """``f`` as one chunked map (``fgrad.transforms.chunks``), or None when
    its batch cannot be formed or ``f`` needs one example at a time."""
    trace = _active.get()[0]
    shared: list[Any] = []  # the shared leaves that are inputs of the map
    batches: list[Any] = []
    layout: list[tuple[TreeDef, list[Any], list[int] | None]] = []  # per argument
    for k, (a, ax) in enumerate(zip(args, axes)):
        if ax is None:
            leaves, td = tree_flatten(a)
            if any(is_batch(x) for x in leaves):
                return None  # a batch of an outer vmap: not a shared value
            where = [i for i, x in enumerate(leaves) if type(x) is Expr or type(x) is float]
            shared += [leaves[i] for i in where]
            for i in where:  # (the body, kept by compiled code, keeps no node)
                leaves[i] = None
            layout.append((td, leaves, where))
            continue
        cols = columns(a, k, args, axes, n, trace)
        if cols is None or not all(is_batch(c) for c in cols[1]):
            return None
        batches += cols[1]
        layout.append((cols[0], [], None))
    if not batches or not (
        any(type(x) is Expr for x in shared) or any(c.prim is not data_p for c in batches)
    ):
        return None  # nothing traced (a rule computing with values): nothing to chunk
    first: list[Any] = []  # the outputs' structure, which are traced values, and the others

    def fun(sh: list[Any], cl: list[Any]) -> tuple[list[Any], list[Any]]:
        new_args = []
        s = c = 0
        for td, leaves, where in layout:
            if where is None:
                new_args.append(tree_unflatten(td, cl[c : c + td.num_leaves]))
                c += td.num_leaves
            else:
                leaves = list(leaves)
                for i in where:
                    leaves[i] = sh[s]
                    s += 1
                new_args.append(tree_unflatten(td, leaves))
        out = trace_batch(f, new_args)
        if out is NOT_BATCHED:
            raise chunks.NotBatched
        outs, td = tree_flatten(out)
        traced = tuple(type(o) is Expr for o in outs)
        if not first:  # outputs that are not traced (ints, strings) stay as f returned them
            first.extend((td, traced, outs))
        elif traced != first[1] or not treedef_equal(td, first[0]):
            raise RuntimeError(
                f"vmap with chunk_size: {getattr(f, '__name__', 'f')} returned outputs of another "
                "structure when traced again; a chunked function must return the same structure "
                "each time (drop chunk_size to map it otherwise)"
            )
        return [o for o, t in zip(outs, traced) if t], []

    data = tuple(
        type(c) is Expr
        and c.trace.level == 1
        and (c.prim is data_p or (c.prim is None and c.trace.guards is not None))
        for c in batches
    )
    body = chunks.Body(fun, len(shared), data, getattr(f, "__name__", "f"))
    try:
        parts = iter(chunks.chunked(body, n, chunk, shared, batches))
    except chunks.NotBatched:
        return None
    td, traced, outs = first
    return batched_result(tree_unflatten(td, [next(parts) if t else o for o, t in zip(outs, traced)]), n)


def _batched_call(f: Callable[..., Any], args: Sequence[Any], axes: Sequence[int | None], n: int) -> Any:
    """``f`` traced once on batched leaves (see the module doc), or None
    when the batch cannot be formed or ``f`` needs one example at a time."""
    jit_trace = _active.get()[0]
    new_args = []
    for k, (a, ax) in enumerate(zip(args, axes)):
        if ax is None:
            new_args.append(a)
            continue
        cols = columns(a, k, args, axes, n, jit_trace)
        if cols is None:
            return None
        new_args.append(tree_unflatten(cols[0], cols[1]))
    out = trace_batch(f, new_args)
    if out is NOT_BATCHED:
        return None
    return batched_result(out, n)
