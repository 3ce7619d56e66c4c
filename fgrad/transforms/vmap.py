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
by the loop instead; ``backend="loop"`` asks for the loop always.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from fgrad.engine import core
from fgrad.engine.core import Expr, bind, make_node
from fgrad.engine.trace import Trace, _active, protected
from fgrad.engine.tree import tree_flatten, tree_unflatten, treedef_key
from fgrad.transforms.batching import (
    TRUSTED,
    Unbatchable,
    batch_sum_p,
    data_p,
    have_numpy,
    is_batch,
    numpy_module,
    settle,
    stack_p,
    unstack,
)

__all__ = ["vmap", "Batched", "looping"]

T = TypeVar("T")

BACKENDS = ("auto", "loop")


class Batched(tuple):  # type: ignore[type-arg]
    """vmap's result: a tuple with one output per example. When it was
    traced as a batch, ``fg.sum`` and ``fg.mean`` of it are one node."""

    _fgrad_sum: Callable[[], Any] | None = None


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
    f: Callable[..., Any], in_axes: Any = 0, out_axes: int = 0, *, backend: str = "auto"
) -> Callable[..., tuple[Any, ...]]:
    """Map ``f`` over the examples of its mapped arguments.

    Args:
        f: a function of one example.
        in_axes: ``0`` (every argument is a sequence of examples), ``None``
            (shared), or a tuple with one of those per positional argument.
        out_axes: ``0``: the result is a tuple with one output per example.
        backend: ``"auto"`` (numpy under jit when it can, see the module
            doc) or ``"loop"``.

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
        if backend == "auto" and n >= 2 and _can_batch():
            out: Batched | None = _batched_call(f, args, axes, n)
            if out is not None:
                return out
        return Batched(f(*_example(args, axes, i)) for i in range(n))

    return batched


def _example(args: Sequence[Any], axes: Sequence[int | None], i: int) -> list[Any]:
    out = []
    for k, (a, ax) in enumerate(zip(args, axes)):
        if ax is None:
            out.append(a)
            continue
        try:
            out.append(a[i])
        except (IndexError, KeyError, TypeError) as e:
            raise TypeError(
                f"vmap: argument {k} has length {len(a)} but its example {i} cannot be read "
                f"({type(e).__name__}: {e}); pass a list or tuple of examples"
            ) from None
    return out


# True while a batched vmap runs its function: a vmap inside it loops (its
# function may close over the outer batch, which numpy would pair up with its
# own examples element by element).
_inside: ContextVar[bool] = ContextVar("fgrad_inside_batched_vmap", default=False)
# True while jit traces a program again whose guards need the trace's exact
# values (``fgrad.compilers.numpycode.exactness``): every vmap runs its loop.
_loop_only: ContextVar[bool] = ContextVar("fgrad_vmap_loop_only", default=False)


def looping(body: Callable[[], T]) -> T:
    """``body()`` with every vmap in it running its loop."""
    saved = _loop_only.get()
    return protected(lambda: _loop_only.set(True), body, lambda: _loop_only.set(saved))


def _exact_double(x: Any) -> bool:
    """A number a float64 array holds exactly, with float arithmetic."""
    return isinstance(x, float) or (isinstance(x, int) and -(2**53) <= x <= 2**53)


_PLAIN_CONSTANTS = frozenset({float, int, bool, str, type(None)})


def _same_arithmetic(x: Any, np: Any) -> bool:
    """A constant that numpy combines with a float64 batch as the scalar
    code combines it with a float: numpy float64s and integers."""
    return type(x) is np.float64 or isinstance(x, np.integer)


def _can_batch() -> bool:
    """Under a live jit trace (the outermost), with numpy, not debugging nans,
    not inside another batched vmap."""
    stack = _active.get()
    return (
        bool(stack)
        and stack[0].guards is not None
        and stack[0].live
        and not core.DEBUG_NANS
        and not _inside.get()
        and not _loop_only.get()
        and have_numpy()
    )


def _data(trace: Trace, values: Any) -> Expr:
    """Constant data of a batch as a node of jit's trace: the function sees
    nodes only (a plain array would meet numpy functions that reduce over
    the batch, or Python code meant for one number)."""
    return make_node(trace, values, data_p, (values,))


def _float_columns(a: Any) -> tuple[type | None, list[Any]] | None:
    """The columns of constant data read straight off a tuple or list of
    floats (one column: each example is a leaf) or of tuples (or lists) of
    one length holding floats, as ``(container, columns)``; None for anything
    else, which takes the general way. This costs C loops per example, where
    flattening each example costs Python calls (the trace's cost would grow
    with the batch)."""
    kinds = set(map(type, a))
    if kinds == {float}:
        return None, [a]
    if len(kinds) != 1 or not kinds <= {tuple, list} or len(set(map(len, a))) != 1:
        return None
    columns = list(zip(*a))
    if not all(set(map(type, c)) == {float} for c in columns):
        return None
    return kinds.pop(), columns


def _batched_call(f: Callable[..., Any], args: Sequence[Any], axes: Sequence[int | None], n: int) -> Any:
    """``f`` traced once on batched leaves (see the module doc), or None
    when the batch cannot be formed or ``f`` needs one example at a time."""
    np = numpy_module()
    jit_trace = _active.get()[0]
    new_args = []
    for k, (a, ax) in enumerate(zip(args, axes)):
        if ax is None:
            new_args.append(a)
            continue
        if type(a) is np.ndarray:  # constant data: a 1-D array of doubles is a batch
            if a.ndim != 1 or a.dtype != np.float64:
                return None  # other dtypes keep their own arithmetic in the loop
            new_args.append(_data(jit_trace, a.copy()))
            continue
        fast = _float_columns(a) if type(a) in (tuple, list) else None
        if fast is not None:
            container, cols = fast
            data = [_data(jit_trace, np.array(c, dtype=float)) for c in cols]
            new_args.append(data[0] if container is None else container(data))
            continue
        flats = [tree_flatten(_example(args, axes, i)[k]) for i in range(n)]
        td = flats[0][1]
        try:
            key = treedef_key(td)  # strict: 0.0 and -0.0, 1 and True as static values or keys differ
            if any(fl[1] is not td and treedef_key(fl[1]) != key for fl in flats):
                return None  # examples of different structures: the loop handles them
        except TypeError:
            return None  # an unhashable static value: the loop says so, if it matters
        columns = []
        for j in range(td.num_leaves):
            leaves = [fl[0][j] for fl in flats]
            for x in leaves:
                if not (type(x) is Expr or _exact_double(x)) or is_batch(x):
                    return None  # e.g. a huge int or a float32: its own arithmetic, in the loop
            if any(type(x) is Expr for x in leaves):
                columns.append(bind(stack_p, *leaves))
            else:
                columns.append(_data(jit_trace, np.array(leaves, dtype=float)))
        new_args.append(tree_unflatten(td, columns))
    for t in _active.get():
        t.settle = settle  # their reverse passes sum shared cotangents over the batch
    tape = jit_trace.tape
    assert tape is not None
    start = len(tape)
    inside, errors = _inside.get(), np.geterr()

    def setup() -> None:
        _inside.set(True)
        np.seterr(all="ignore")  # IEEE results, as the scalar ops give

    def cleanup() -> None:  # (not np.errstate: see fgrad.engine.trace.protected)
        _inside.set(inside)
        np.seterr(**errors)

    try:
        out = protected(setup, lambda: f(*new_args), cleanup)
    except Unbatchable:
        return None
    except Exception:  # noqa: BLE001 - e.g. math.exp of a batch node (float() refused)
        return None  # the loop runs f again: a genuine error is raised there
    for node in tape[start:]:
        # An impl that did not fail on a batch is trusted only if it is
        # fgrad's own or has a vectorized version: a user's impl written with
        # numpy may well reduce over the batch without an error.
        if (
            node.prim is not None
            and node.prim.vectorized is None
            and id(node.prim) not in TRUSTED
            and any(map(is_batch, node.args))
        ):
            return None
        # A constant of another arithmetic (a float32, a Fraction) keeps it in
        # the loop; numpy would compute it in float64 over the batch.
        if node.prim is not data_p and not all(
            type(a) in _PLAIN_CONSTANTS or type(a) is Expr or _same_arithmetic(a, np) for a in node.args
        ):
            return None
    outs, out_td = tree_flatten(out)
    per_leaf = [unstack(o, n) if is_batch(o) else [o] * n for o in outs]
    if out_td.kind == "leaf":
        result = Batched(per_leaf[0])
    else:
        result = Batched(tree_unflatten(out_td, [col[i] for col in per_leaf]) for i in range(n))
    if len(outs) == 1 and out_td.kind == "leaf" and is_batch(outs[0]):
        batch = outs[0]
        result._fgrad_sum = lambda: bind(batch_sum_p, batch, n)
    return result
