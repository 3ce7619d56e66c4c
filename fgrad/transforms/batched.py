"""vmap's batched trace: a function run once on batched leaves, and its result.

``columns`` makes the batched leaves of one mapped argument (constant data
as arrays, jit's array arguments as they are, traced examples stacked);
``trace_batch`` runs the function on them, or says it needs one example at a
time; ``batched_result`` gives its per-example outputs as a lazy tuple
(``_LazyBatched``), whose items are made only when read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from fgrad.engine.core import Expr, bind, make_node
from fgrad.engine.trace import Trace, _active, protected
from fgrad.engine.tree import TreeDef, tree_flatten, tree_structure, tree_unflatten, treedef_key
from fgrad.transforms.batching import (
    TRUSTED,
    Unbatchable,
    batch_sum_p,
    data_p,
    is_batch,
    numpy_module,
    settle,
    stack_p,
    unstack,
)

__all__ = ["Batched", "NOT_BATCHED", "columns", "trace_batch", "batched_result", "data"]


class Batched(tuple):  # type: ignore[type-arg]
    """vmap's result: a tuple with one output per example. When it was
    traced as a batch, ``fg.sum`` and ``fg.mean`` of it are one node, and
    its items are made when first read (:class:`_LazyBatched`)."""

    _fgrad_sum: Callable[[], Any] | None = None


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


def _exact_double(x: Any) -> bool:
    """A number a float64 array holds exactly, with float arithmetic."""
    return isinstance(x, float) or (isinstance(x, int) and -(2**53) <= x <= 2**53)


_PLAIN_CONSTANTS = frozenset({float, int, bool, str, type(None)})


def _same_arithmetic(x: Any, np: Any) -> bool:
    """A constant that numpy combines with a float64 batch as the scalar
    code combines it with a float: numpy float64s and integers."""
    return type(x) is np.float64 or isinstance(x, np.integer)


def data(trace: Trace, values: Any) -> Expr:
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


def columns(
    a: Any, k: int, args: Sequence[Any], axes: Sequence[int | None], n: int, trace: Trace
) -> tuple[TreeDef, list[Any]] | None:
    """The mapped argument ``a`` (argument ``k``) as batched leaves: the
    structure of one example and one batch per leaf; None when the batch
    cannot be formed (the loop handles it)."""
    np = numpy_module()
    if type(a) is np.ndarray:  # constant data: a 1-D array of doubles is a batch
        if a.ndim != 1 or a.dtype != np.float64:
            return None  # other dtypes keep their own arithmetic in the loop
        return _LEAF, [data(trace, a.copy())]
    if getattr(type(a), "__fgrad_batch__", False):  # jit's view of an array argument: its node
        return _LEAF, [a.node]
    fast = _float_columns(a) if type(a) in (tuple, list) else None
    if fast is not None:
        return tree_structure(a[0]), [data(trace, np.array(c, dtype=float)) for c in fast[1]]
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
            columns.append(data(trace, np.array(leaves, dtype=float)))
    return td, columns


_LEAF = tree_structure(0.0)
# What trace_batch returns when ``f`` cannot run on a batch.
NOT_BATCHED = object()


def trace_batch(f: Callable[..., Any], new_args: Sequence[Any]) -> Any:
    """``f(*new_args)`` run on batched leaves, or NOT_BATCHED when ``f``
    needs one example at a time."""
    np = numpy_module()
    for t in _active.get():
        t.settle = settle  # their reverse passes sum shared cotangents over the batch
    tape = _active.get()[0].tape
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
        return NOT_BATCHED
    except Exception:  # noqa: BLE001 - e.g. math.exp of a batch node (float() refused)
        return NOT_BATCHED  # the loop runs f again: a genuine error is raised there
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
            return NOT_BATCHED
        # A constant of another arithmetic (a float32, a Fraction) keeps it in
        # the loop; numpy would compute it in float64 over the batch.
        if node.prim is not data_p and not all(
            type(a) in _PLAIN_CONSTANTS or type(a) is Expr or _same_arithmetic(a, np) for a in node.args
        ):
            return NOT_BATCHED
    return out


def batched_result(out: Any, n: int) -> Batched:
    """The per-example outputs of ``out``, traced on batched leaves: a tuple
    whose items (a node per example at each level) are made when first read
    (:class:`_LazyBatched`)."""
    outs, out_td = tree_flatten(out)

    def items() -> tuple[Any, ...]:
        per_leaf = [unstack(o, n) if is_batch(o) else [o] * n for o in outs]
        if out_td.kind == "leaf":
            return tuple(per_leaf[0])
        return tuple(tree_unflatten(out_td, [col[i] for col in per_leaf]) for i in range(n))

    whole = None
    if len(outs) == 1 and out_td.kind == "leaf" and is_batch(outs[0]):
        batch = outs[0]

        def whole() -> Any:
            return bind(batch_sum_p, batch, n)

    return _LazyBatched.lazy(n, items, whole)


class _LazyBatched(Batched):
    """A batched vmap's result under jit: a tuple of ``n`` per-example
    outputs whose items (a node per example at each level: a million
    examples make two million nodes under ``jit(grad(...))``, some 400 MB)
    are made when first read (iterating, indexing, comparing); ``fg.sum``
    and ``fg.mean`` read none. It holds no items of its own, so C code that
    reads a tuple's storage directly (``%`` formatting, ``tuple.__getitem__(t,
    i)``) sees none: pass ``tuple(t)``. Pytrees take it as a :class:`Batched`."""

    __tree_type__ = Batched  # (fgrad.engine.tree: the type it flattens and rebuilds as)
    _make: Callable[[], tuple[Any, ...]]
    _items: tuple[Any, ...] | None = None
    _n = 0

    @classmethod
    def lazy(
        cls, n: int, make: Callable[[], tuple[Any, ...]], whole: Callable[[], Any] | None
    ) -> _LazyBatched:
        self = tuple.__new__(cls)
        self._n, self._make, self._fgrad_sum = n, make, whole
        return self

    def _seq(self) -> tuple[Any, ...]:
        items = self._items
        if items is None:
            items = self._items = self._make()
        return items

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Any:
        return iter(self._seq())

    def __reversed__(self) -> Any:
        return reversed(self._seq())

    def __getitem__(self, i: Any) -> Any:
        return self._seq()[i]

    def __contains__(self, x: Any) -> bool:
        return x in self._seq()

    def __hash__(self) -> int:
        return hash(self._seq())

    def __add__(self, other: Any) -> Any:
        return self._seq() + _plain(other) if isinstance(other, tuple) else NotImplemented

    def __radd__(self, other: Any) -> Any:
        return _plain(other) + self._seq() if isinstance(other, tuple) else NotImplemented

    def __mul__(self, k: Any) -> Any:
        return self._seq() * k if isinstance(k, int) else NotImplemented

    __rmul__ = __mul__

    def index(self, *args: Any) -> int:
        return self._seq().index(*args)

    def count(self, x: Any) -> int:
        return self._seq().count(x)

    def __repr__(self) -> str:
        return repr(self._seq())

    def __reduce__(self) -> Any:
        return (Batched, (self._seq(),))

    def __copy__(self) -> _LazyBatched:
        return self


def _plain(x: Any) -> Any:
    return x._seq() if isinstance(x, _LazyBatched) else x


def _compared(name: str) -> Callable[[_LazyBatched, Any], Any]:
    """A comparison as a tuple's: NotImplemented for what a tuple does not
    take, so that the other operand (a numpy array, say) is asked."""
    compare = getattr(tuple, name)
    return lambda self, other: compare(self._seq(), _plain(other))


for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(_LazyBatched, _name, _compared(_name))
