"""Batches as values: the numpy backend of ``vmap`` under ``jit``.

Under jit, :func:`fgrad.vmap` traces the per-example function once on
*batched* leaves: nodes whose value is a 1-D numpy array holding that leaf
for every example. Every operation then runs once over the whole batch (a
primitive's ``vectorized`` implementation), the reverse pass of a transform
opened outside the vmap sums the cotangents of shared values over the batch
(:func:`settle`), and jit compiles the graph to numpy code (``fgrad.compilers.numpycode``).

A function that cannot run on a batch (a Python branch on a batched value,
a primitive without a vectorized implementation) raises :class:`Unbatchable`
while it is traced, and vmap runs its loop instead: the same results.

numpy is imported on first use only: the rest of fgrad works without it.
"""

from __future__ import annotations

from typing import Any

from fgrad.engine.core import Expr, Primitive, Unbatchable, _is_array, _peel, bind, make_node
from fgrad.engine.trace import active_traces
from fgrad.primitives import arith, ops

__all__ = [
    "Unbatchable",
    "unstack",
    "numpy_module",
    "have_numpy",
    "is_batch",
    "batch_size",
    "stack_p",
    "index_p",
    "onehot_p",
    "batch_sum_p",
    "bcast_p",
    "vdot_p",
    "data_p",
    "settle",
    "TRUSTED",
]

_np: Any = None


def numpy_module(needed_by: str = "the numpy backend") -> Any:
    """numpy, or an ImportError naming the extra to install."""
    global _np
    if _np is None:
        try:
            import numpy
        except ImportError:
            raise ImportError(
                f"{needed_by} needs numpy, which is not installed: pip install 'fgrad[numpy]'"
            ) from None
        _register(numpy)
        _np = numpy  # published last: another thread sees numpy only once registered
    return _np


def have_numpy() -> bool:
    try:
        numpy_module()
    except ImportError:
        return False
    return True


def is_batch(x: Any) -> bool:
    """Whether ``x`` (a node, under any levels) holds a batch."""
    return _np is not None and type(_peel(x)) is _np.ndarray


def batch_size(x: Any) -> int:
    return len(_peel(x))


def _batch(prim: Primitive, *args: Any) -> Any:
    """A batch primitive in a rule. Applied to constants only (a cotangent
    seed ``1.0`` broadcast over the batch, say), it makes a numpy array:
    that becomes constant data of jit's trace, so that rules never hand a
    raw array to an operation (arrays from users are refused there)."""
    out = bind(prim, *args)
    if type(out) is not Expr and _is_array(out):
        stack = active_traces()
        if stack:
            return make_node(stack[0], out, data_p, (out,))
    return out


# The batch primitives --------------------------------------------------------
# A scalar where a batch is expected means "the same for every example"
# (numpy broadcasting), so each impl also accepts one.


stack_p: Primitive = Primitive(
    "stack",
    impl=lambda *xs: _np.array(xs, dtype=float),
    vjp=lambda g, out, *xs: tuple(index_p(g, i, len(xs)) for i in range(len(xs))),
    jvp=lambda dxs, out, *xs: _batch(stack_p, *(0.0 if d is None else d for d in dxs)),
    doc="""``stack(x0, ..., x{n-1})``: n scalars (one per example) as a batch.
Derivative: the identity per example; its cotangent is split back with ``index``.""",
)

index_p: Primitive = Primitive(
    "index",
    impl=lambda x, i, n: float(x[i]) if _is_array(x) else x,
    vjp=lambda g, out, x, i, n: (_batch(onehot_p, g, i, n), None, None),
    jvp=lambda dxs, out, x, i, n: index_p(dxs[0], i, n),
    doc="""``index(x, i, n)``: example ``i`` of a batch of ``n`` (a scalar passes through).
Derivative: 1 at example ``i``; its cotangent goes back as a ``onehot`` batch.""",
)


def unstack(o: Any, n: int) -> list[Any]:
    """``[index(o, i, n) for i in range(n)]``, as ``bind`` would build them
    (a node per example at each level of ``o``'s traces, the values read off
    the batch once with ``tolist``), without a ``bind`` per example: a
    batched vmap's per-example outputs cost the trace little."""
    if type(o) is not Expr:
        return list(map(float, o.tolist())) if _is_array(o) else [o] * n  # (floats, as index's impl gives)
    below = unstack(o.value, n)
    trace = o.trace
    return [make_node(trace, below[i], index_p, (o, i, n)) for i in range(n)]


def _onehot(g: Any, i: int, n: int) -> Any:
    out = _np.zeros(n)
    out[i] = g
    return out


onehot_p: Primitive = Primitive(
    "onehot",
    impl=_onehot,
    vjp=lambda g, out, x, i, n: (index_p(g, i, n), None, None),
    jvp=lambda dxs, out, x, i, n: _batch(onehot_p, dxs[0], i, n),
    doc="""``onehot(g, i, n)``: a batch of ``n`` zeros with ``g`` at example ``i``.
Derivative: 1 in g at example ``i``; its cotangent comes back with ``index``.""",
)

batch_sum_p: Primitive = Primitive(
    "batch_sum",
    impl=lambda x, n: float(x.sum()) if _is_array(x) else x * n,
    vjp=lambda g, out, x, n: (_batch(bcast_p, g, n), None),
    jvp=lambda dxs, out, x, n: batch_sum_p(dxs[0], n),
    doc="""``batch_sum(x, n)``: the sum of a batch of ``n`` over its examples (``x * n`` for a scalar).
Derivative: 1 in each example; its cotangent goes back with ``bcast``.""",
)

bcast_p: Primitive = Primitive(
    "bcast",
    impl=lambda x, n: x if _is_array(x) else _np.full(n, x),
    vjp=lambda g, out, x, n: (batch_sum_p(g, n), None),
    jvp=lambda dxs, out, x, n: _batch(bcast_p, dxs[0], n),
    doc="""``bcast(x, n)``: a scalar as a batch of ``n`` equal values (a batch passes through).
Derivative: 1 to each example; its cotangent comes back with ``batch_sum``.""",
)


def _vdot_impl(a: Any, b: Any, n: int) -> float:
    if _is_array(a) and _is_array(b):
        return float(_np.dot(a, b))
    return batch_sum_p.impl(a * b, n)  # type: ignore[no-any-return]


def _vdot_jvp(dxs: tuple[Any, ...], out: Any, a: Any, b: Any, n: int) -> Any:
    da, db = dxs[0], dxs[1]
    left = None if da is None else vdot_p(da, b, n)
    right = None if db is None else vdot_p(a, db, n)
    if left is None:
        return right
    return left if right is None else left + right


vdot_p: Primitive = Primitive(
    "vdot",
    impl=_vdot_impl,
    vjp=lambda g, out, a, b, n: (g * b, g * a, None),
    jvp=_vdot_jvp,
    doc="""``vdot(a, b, n)``: the sum over a batch of ``a * b`` (a weight's gradient).
Derivatives: ``b`` in a and ``a`` in b, example by example.""",
)


data_p: Primitive = Primitive(
    "data",
    impl=lambda x: x,
    vjp=lambda g, out, x: (None,),
    jvp=lambda dxs, out, x: None,
    doc="""``data(a)``: constant data (an array of examples) as a node.
Derivative: none (it is a constant).""",
)

# Primitives whose impls are fgrad's: the arithmetic ones work on arrays
# elementwise, the others fail on them and use their vectorized versions.
TRUSTED = {
    id(p)
    for p in (*ops.PRIMITIVES.values(), stack_p, index_p, onehot_p, batch_sum_p, bcast_p, vdot_p, data_p)
}
for _p in (stack_p, index_p, onehot_p, batch_sum_p, bcast_p, vdot_p, data_p):
    _p.symbolic_zeros = _p.trusted = True


# The reverse pass across the batch boundary ----------------------------------


def settle(items: Any, node: Expr, combine: Any) -> Any:
    """The cotangent of ``node`` from its contributions (a value, a deferred
    product or a list of those), in a trace opened outside a batched vmap.
    Contributions that are batches are summed over the batch when ``node``
    itself is not one (a value shared by all examples); a deferred product
    ``(a, b)`` of a batch becomes one ``vdot``."""
    if is_batch(node.value):
        return combine(items, False) if type(items) in (list, tuple) else items
    shared: list[Any] = []
    per_example: list[Any] = []
    totals: list[Any] = []
    n = 0
    for c in items if type(items) is list else [items]:
        if type(c) is tuple and (is_batch(c[0]) or is_batch(c[1])):
            n = batch_size(c[0] if is_batch(c[0]) else c[1])
            totals.append(bind(vdot_p, c[0], c[1], n))
        elif type(c) is not tuple and is_batch(c):
            n = batch_size(c)
            per_example.append(c)
        else:
            shared.append(c)
    if per_example:
        total = per_example[0] if len(per_example) == 1 else bind(arith.sum_p, *per_example)
        totals.append(bind(batch_sum_p, total, n))
    if shared:
        totals.append(combine(shared, False))
    return totals[0] if len(totals) == 1 else bind(arith.sum_p, *totals)


# numpy implementations of fgrad's own primitives ----------------------------
# Only consulted when an impl fails on a batch (``math`` functions and Python
# branches do); operators, sum and dot already work on arrays.


def _relu(x: Any) -> Any:
    return _np.maximum(x, 0.0)


def _sigmoid(x: Any) -> Any:
    e = _np.exp(-_np.abs(x))  # never overflows
    return _np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _power(x: Any, y: Any) -> Any:
    # An exponent as an array, elementwise: numpy takes a scalar 0.5 as sqrt,
    # which gives -0.0 ** 0.5 = -0.0 and (-inf) ** 0.5 = nan (C's pow: 0.0, inf).
    return _np.power(x, y if _np.ndim(y) else _np.full(_np.shape(x), y))


def _maximum(x: Any, y: Any) -> Any:
    # As the scalar impl: x where x > y; y where y > x or y is nan; else x
    # (a tie of 0.0 and -0.0 gives the first, where np.maximum gives the second).
    return _np.where(x > y, x, _np.where((y > x) | (y != y), y, x))


def _minimum(x: Any, y: Any) -> Any:
    return _np.where(x < y, x, _np.where((y < x) | (y != y), y, x))


def _pow_log(c: Any, x: Any, y: Any, k: int) -> Any:
    out = c * _power(x, y)
    for _ in range(k):
        out = out * _np.log(x)
    return _np.where((c == 0) | ((x == 0) & (k > 0)), 0.0, out)


def _round_vectorized(x: Any, ndigits: int) -> Any:
    if ndigits == 0:
        return _np.round(x)  # round half to even, as Python's round(x, 0), signs included
    # numpy scales by 10**ndigits, Python rounds the exact decimal value: other bits.
    if not _is_array(x):
        return round(x, ndigits)
    return _np.array([round(v, ndigits) for v in _np.ravel(x).tolist()]).reshape(_np.shape(x))


def _register(np: Any) -> None:
    table = {
        arith.div: np.divide,
        arith.pow_: _power,
        arith.pow_const: _power,
        arith.exp: np.exp,
        arith.log: np.log,
        arith.abs_: np.abs,
        arith.step: lambda x: (x > 0) * 1.0,
        arith.sign: np.sign,
        arith.pow_log: _pow_log,
        arith.share: lambda x, y: np.where(x > y, 1.0, np.where(y > x, 0.0, 0.5)),
        ops.tanh: np.tanh,
        ops.relu: _relu,
        ops.sigmoid: _sigmoid,
        ops.sqrt: np.sqrt,
        ops.sin: np.sin,
        ops.cos: np.cos,
        ops.maximum: _maximum,
        ops.minimum: _minimum,
        ops.floor_p: np.floor,
        ops.ceil_p: np.ceil,
        ops.trunc_p: np.trunc,
        ops.round_p: _round_vectorized,
        arith.floordiv: np.floor_divide,
        arith.mod: np.mod,
    }
    for prim, fn in table.items():
        if prim.vectorized is None:
            prim.vectorized = fn
