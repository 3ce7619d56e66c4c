"""jit: trace once per input structure, compile to straight-line Python, guard.

``fg.jit(f)`` traces ``f`` on nodes the first time it sees an argument
structure, then emits a Python function with one statement per needed node
(``v12 = v3 * v7``, ``v13 = f2(v12)``) and compiles it. Every call, the first
one included, returns what that function computes from the arguments'
leaves: no nodes, no tape, no pytree walk beyond flattening the arguments.

Comparisons of traced values made while tracing (``if x > 0:``) are recorded
as guards and checked by the compiled code; when one fails, ``f`` is traced
again along the other path, which is cached beside the first (a bounded LRU
over all paths). Results are bit-for-bit those of calling ``f`` eagerly: the
compiled code performs the same float operations in the same order (vmap's
numpy backend excepted: its code groups dots into matrix products).

The cache is keyed strictly: static arguments, keyword arguments, dict keys
and static dataclass fields of the traced arguments by type and bits, so
that ``0.0`` and ``-0.0``, ``1``, ``1.0`` and ``True``, or nans of other
payloads never share a path (they are equal, but a function can tell them
apart). A 1-D float64 numpy array among the traced arguments is data read at
each call: ``f`` sees it as a :class:`TracedArray` (for ``fg.vmap``, ``len``
and indexing), and one path serves every array of its length.

Under ``fg.debug_nans()`` a jitted function runs ``f`` eagerly instead of its
compiled path (the same bits for scalar code), so that a nan raises at the
operation and line that made it.

What reaches the generated source: identifiers made here (``x0``, ``v12``,
``f3``, ``K[0]``) and ``repr`` of finite floats and of ints below 2**63.
Everything else (dict keys, strings, functions, nans) stays in Python objects
next to the code.

Inside another transform (``grad(jit(f))``) a jitted function simply calls
``f``: the outer transform needs the graph, and the result is the same.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import inspect
import numbers
import operator
import struct
import threading
import types
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, NoReturn, cast

from pyrsistent import PMap, PVector

from . import core
from .batching import index_p
from .codegen import GuardFailed, compile_trace
from .core import EscapedNodeError, Expr, _active, _is_array, bind, make_node, new_trace
from .transforms import lower
from .tree import TreeDef, tree_flatten, tree_paths, tree_unflatten
from .treegen import FlattenCache, unflattener

__all__ = ["jit", "Jitted", "CacheInfo", "TracedArray"]

# Above this many operations a path runs as a table-driven program instead of
# compiled source: CPython's compiler costs more than the code would save.
# (Measured on the moons step in binary style, 131,551 operations: compiling
# takes ~1.1 s and runs a step in 5 ms; the table takes 33 ms.)
MAX_COMPILED_OPS = 250_000


class CacheInfo(NamedTuple):
    """``traces``: times ``f`` was traced; ``hits``/``misses``: calls served
    by a cached path or not; ``entries``: paths held now."""

    traces: int
    hits: int
    misses: int
    entries: int


class _Key:
    """A cache key hashed once: static data (a dataset passed as a tuple)
    can take longer to hash than the compiled step takes to run, and a call
    looks the key up several times. Keys nest (a call's key holds the keys of
    its structure and of its static values, each hashed once)."""

    __slots__ = ("parts", "hash")

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self.hash = hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            type(other) is _Key and self.hash == other.hash and self.parts == other.parts
        )


# Strict keys -------------------------------------------------------------------------------
# Python's == says 0.0 == -0.0 and 1 == 1.0 == True, and hashes them alike;
# a function may still tell them apart (1 / s, `flag is True`, type(k)). A
# value's strict key is a flat tuple in which each number carries its type
# and each float its bits, walked iteratively (any depth).

_bits = struct.Struct("<d").pack


class _Mark:
    """A frozenset's place in a strict key being built (never a user value)."""

    __slots__ = ("kind", "t")

    def __init__(self, kind: str, t: type | None = None) -> None:
        self.kind = kind
        self.t = t


_OPEN, _NEXT = _Mark("open"), _Mark("next")
_SEQ, _SET, _OBJ, _SKIP = (_Mark(k) for k in ("seq", "set", "obj", "skip"))
_ENCODED = (float, complex, tuple, frozenset, int, str, Decimal, PVector, PMap, type(None))
# Containers whose == is their elements' (namedtuples), not a subclass's own.
_TUPLE_EQ: Any = tuple.__eq__
_FROZENSET_EQ: Any = frozenset.__eq__


def _strict(x: Any) -> tuple[Any, ...]:
    """The strict key of a hashable value: equal only for values a function
    cannot tell apart by type or bits, inside tuples (namedtuples),
    frozensets, pyrsistent containers and dataclasses too. Other objects
    enter as themselves, compared by their own ``==``.

    >>> _strict(0.0) == _strict(-0.0), _strict((1,)) == _strict((True,)), _strict("a") == _strict("a")
    (False, False, True)
    """
    out: list[Any] = []
    todo: list[Any] = [x]
    frames: list[tuple[list[Any], list[tuple[Any, ...]]]] = []
    while todo:
        x = todo.pop()
        t = type(x)
        if t is float:
            # Equal nonzero floats have equal bits; zeros and nans carry theirs.
            out.append(x if x and x == x else (t, _bits(x)))
        elif t is str:
            out.append(x)
        elif t is tuple:
            out.append((_SEQ, t, len(x)))
            todo.extend(reversed(x))
        elif t is int or t is bool or x is None:
            out.append((t, x))
        elif t is _Mark:
            if x is _SKIP:
                out.append(x)
            elif x is _OPEN:
                frames.append((out, []))
                out = []
            elif x is _NEXT:  # an element done, another to come
                frames[-1][1].append(tuple(out))
                out = []
            else:  # the last element done: the set's type is on its mark
                frames[-1][1].append(tuple(out))
                out, elems = frames.pop()
                # With multiplicities: a set may hold two nans of the same bits.
                out.append((_SET, x.t, frozenset(Counter(elems).items())))
        elif isinstance(x, float):
            out.append((t, _bits(x)))
        elif isinstance(x, complex):
            out.append((t, _bits(x.real), _bits(x.imag)))
        elif (isinstance(x, tuple) and t.__eq__ is _TUPLE_EQ) or isinstance(x, PVector):
            out.append((_SEQ, t, len(x)))
            todo.extend(reversed(x))
        elif (isinstance(x, frozenset) and t.__eq__ is _FROZENSET_EQ) or isinstance(x, PMap):
            # Each element's key apart, in a frozenset: order-free, as the set.
            elems = list(x) if isinstance(x, frozenset) else [tuple(kv) for kv in x.items()]
            if not elems:
                out.append((_SET, t, frozenset()))
                continue
            todo.append(_Mark("close", t))
            for e in elems[1:]:
                todo.append(e)
                todo.append(_NEXT)
            todo.append(elems[0])
            todo.append(_OPEN)
        elif t is Decimal:
            out.append((t, str(x)))  # Decimal("0.0") == Decimal("-0.0") == Decimal("0.00")
        elif t.__module__ == "numpy" and isinstance(x, numbers.Number):
            out.append((t, cast(Any, x).tobytes()))  # numpy scalars: float32(0.0) == float32(-0.0)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            # The object by its own ==, and its compared fields strictly where
            # they are values this walk knows (a field holding anything else is
            # left to the object's ==).
            fields = [f for f in dataclasses.fields(x) if f.compare]
            out.append((_OBJ, t, x, len(fields)))
            for f in reversed(fields):
                v = getattr(x, f.name)
                known = isinstance(v, _ENCODED) or (dataclasses.is_dataclass(v) and not isinstance(v, type))
                todo.append(v if known else _SKIP)
        else:
            out.append((t, x))
    return tuple(out)


def _treedef_key(td: TreeDef) -> tuple[Any, ...]:
    """A TreeDef's strict key: container kinds and types, and its dict keys
    and static fields' values as :func:`_strict` keys them. Walked
    iteratively, a vector of leaves in one step.

    (fgrad.tree is to provide ``treedef_key``, the same encoding: this one
    can then be replaced by it.)"""
    out: list[Any] = []
    todo = [td]
    while todo:
        t = todo.pop()
        kind = t.kind
        if kind == "leaf":
            out.append(0)
            continue
        kids = t.children
        n = len(kids)
        if n and kids[0].kind == "leaf" and kids.count(kids[0]) == n:
            out.append((kind, t.node_type, -n))  # n leaves
        else:
            out.append((kind, t.node_type, n))
            todo.extend(reversed(kids))
        meta = t.meta
        if meta is not None:
            if kind == "map" and all(type(k) is str for k in meta):
                out.append((str, meta))  # str keys are equal only if they are the same text
            else:
                out.append(_strict(meta))
    return tuple(out)


# What a jitted function sees in place of a numpy array ------------------------------------


class TracedArray:
    """A 1-D float64 numpy array passed to a jitted function, as the function
    sees it: a sequence of its examples as traced values.

    ``len(xs)``, ``xs[i]``, iteration, ``shape``/``ndim``/``size``/``dtype``
    and ``fg.vmap`` (which maps over it) work; the compiled code reads the
    array given at each call, and one path serves every array of that size.
    Whole-array numpy operations (``xs * 2``, ``np.sum(xs)``) are refused:
    they would run once, while tracing, and their result be frozen into the
    compiled code.
    """

    __slots__ = ("node", "n", "dtype", "where")

    def __init__(self, node: Expr, n: int, dtype: Any, where: str) -> None:
        self.node = node
        self.n = n
        self.dtype = dtype
        self.where = where

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def ndim(self) -> int:
        return 1

    @property
    def size(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, bool) or not hasattr(type(i), "__index__"):
            self._refuse(f"indexing by a {type(i).__name__}")
        k = operator.index(i)
        if not -self.n <= k < self.n:
            raise IndexError(f"index {k} is out of bounds for {self.where}, an array of {self.n} examples")
        return bind(index_p, self.node, k % self.n, self.n)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.n))

    def __repr__(self) -> str:
        return f"TracedArray({self.where}: {self.n} examples)"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(self._message(f".{name}"))

    def _refuse(self, what: str) -> NoReturn:
        raise TypeError(self._message(what))

    def _message(self, what: str) -> str:
        return (
            f"jit: {self.where} is a numpy array, which a jitted function sees as a sequence of its "
            f"{self.n} examples (traced, so that one compiled path serves every array of that size): "
            f"len(), indexing by int, iteration, shape and fg.vmap work on it, {what} does not. Map "
            "over it with fg.vmap, close over the array instead (constant data of the compiled "
            "code), or call the function without jit"
        )

    __hash__ = None  # type: ignore[assignment]


def _refusal(what: str) -> Callable[..., NoReturn]:
    def refuse(self: TracedArray, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse(what)

    return refuse


for _name, _what in [
    *((f"__{op}__", "arithmetic") for op in (
        "add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv", "rfloordiv",
        "mod", "rmod", "pow", "rpow", "matmul", "rmatmul", "neg", "pos", "abs")),
    *((f"__{op}__", "comparison") for op in ("lt", "le", "gt", "ge", "eq", "ne")),
    ("__bool__", "a truth test"), ("__float__", "float()"), ("__int__", "int()"),
    ("__array__", "conversion to a numpy array"), ("__array_ufunc__", "a numpy function"),
    ("__array_function__", "a numpy function"),
]:
    setattr(TracedArray, _name, _refusal(_what))


# jit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    run: Callable[[Sequence[Any]], tuple[Any, ...]]
    out_tree: TreeDef
    source: str
    n_guards: int
    build: Callable[[Sequence[Any]], Any] | None  # the outputs' compiled unflatten


def jit(
    f: Callable[..., Any],
    static_argnums: int | Sequence[int] = (),
    cache_size: int = 64,
    max_compiled_ops: int | None = None,
) -> Jitted:
    """Compile ``f`` per argument structure, guarding data-dependent branches.

    Args:
        f: a function of pytrees of numbers returning a pytree (of numbers,
            or of constants such as strings, which are returned as they are).
        static_argnums: arguments that key the cache (with their types and
            float bits) instead of being traced: sizes, flags, fixed data.
            They must be hashable and immutable, as in JAX: a call with
            the very same objects as the last call reuses its key without
            hashing them again (a dataset can take longer to hash than the
            step takes to run). Negative numbers count from the end.
            Keyword arguments are static too. Traced leaves must be real
            numbers (ints among them are traced as floats) or 1-D float64
            numpy arrays, which ``f`` sees as :class:`TracedArray` sequences
            of examples (for ``fg.vmap``), keyed by their length.
        cache_size: how many compiled paths to keep (least recently used go).
        max_compiled_ops: paths with more operations run as a table-driven
            program instead of compiled source (default ``MAX_COMPILED_OPS``).

    Returns:
        A callable with ``cache_info()`` and ``source(*args)``. Under
        ``fg.debug_nans()`` it calls ``f`` eagerly instead (on the arguments
        as it would trace them: ints as floats), so that a nan raises
        :class:`fgrad.NanError` at the operation that made it; scalar code
        gives the same bits as the compiled path.

    >>> import fgrad as fg
    >>> step = jit(fg.grad(lambda x: x * 2 if x > 0 else -x))
    >>> step(3.0), step(-3.0), step(5.0)
    (2.0, -1.0, 2.0)
    >>> step.cache_info()
    CacheInfo(traces=2, hits=1, misses=2, entries=2)
    """
    if not callable(f):
        raise TypeError(f"jit: f must be a callable (the function to compile), got a {type(f).__name__}")
    nums = (static_argnums,) if isinstance(static_argnums, int) else static_argnums
    if (not isinstance(nums, Sequence) or isinstance(nums, str)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in nums)):
        raise TypeError(f"jit: static_argnums must be an int or a tuple of ints, got {static_argnums!r}")
    nums = tuple(nums)
    for i in set(nums):
        if nums.count(i) > 1:
            raise ValueError(f"jit: static_argnums {nums} lists argument {i} twice; list each once")
    if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 1:
        raise ValueError(f"jit: cache_size must be a positive int, got {cache_size!r}")
    limit = max_compiled_ops
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"jit: max_compiled_ops must be a non-negative int, got {max_compiled_ops!r}")
    positional = _positional_count(f)
    if positional is not None:
        for i in nums:
            if not -positional <= i < positional:
                raise ValueError(
                    f"jit: static_argnums names argument {i} but the call has {positional} positional "
                    f"argument(s) at most ({_name_of(f)} takes {positional}); number them from 0 "
                    "(negative numbers count from the end)"
                )
    return Jitted(f, nums, cache_size, max_compiled_ops)


def _name_of(f: Any) -> str:
    name = getattr(f, "__name__", None)
    return name if isinstance(name, str) else type(f).__name__


def _signature(f: Callable[..., Any], follow_wrapped: bool = True) -> inspect.Signature | None:
    try:
        return inspect.signature(f, follow_wrapped=follow_wrapped)
    except (TypeError, ValueError):  # a builtin or an object without one
        return None


def _positional_count(f: Callable[..., Any]) -> int | None:
    """How many positional arguments ``f`` takes, or None if unknown or any
    (a wrapper taking ``*args``, such as ``fg.grad(g)``, is not looked
    through: a decorator may change the arguments)."""
    sig = _signature(f, follow_wrapped=False)
    if sig is None:
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    return sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for k in kinds)


class Jitted:
    """A jit-compiled function; see :func:`jit`."""

    def __init__(
        self,
        f: Callable[..., Any],
        static_argnums: tuple[int, ...],
        cache_size: int,
        max_compiled_ops: int | None = None,
    ) -> None:
        functools.update_wrapper(self, f)
        self.fun = f
        self.static_argnums = static_argnums
        self.cache_size = cache_size
        self.max_compiled_ops = max_compiled_ops
        self._paths: OrderedDict[tuple[Hashable, int], _Path] = OrderedDict()
        self._by_key: dict[Hashable, list[tuple[Hashable, int]]] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._traces = self._hits = self._misses = 0
        self._flat = FlattenCache(per_key=4, max_keys=1)  # compiled flatteners of the arguments
        # The last call's structure, static objects and keyword items, and its key.
        self._last_key: tuple[TreeDef, tuple[Any, ...], tuple[Any, ...], _Key] | None = None
        self._positions: dict[int, tuple[int, ...]] = {}  # number of arguments -> static positions
        self._td_keys: dict[int, tuple[TreeDef, _Key]] = {}  # id(TreeDef) -> (it, its key), a few

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._traces, self._hits, self._misses, len(self._paths))

    # -- the call's key -------------------------------------------------------------------
    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Key, list[Any], Any]:
        n = len(args)
        static = self._positions.get(n)
        if static is None:
            static = self._static_positions(args, kwargs)
        dynamic = tuple(a for i, a in enumerate(args) if i not in static) if static else args
        fast = self._flat.flatten(None, dynamic)  # a structure met before: compiled code
        arrays: tuple[tuple[int, int, str], ...] = ()
        if fast is not None:
            leaves, td = fast
        else:
            leaves, td = tree_flatten(dynamic)
            self._flat.seen(None, td, leaves)
            if not set(map(type, leaves)) <= {float}:
                leaves, arrays = self._as_floats(leaves, td, static)
        statics = tuple(args[i] for i in static) if static else ()
        items = tuple(kwargs.items()) if kwargs else ()
        layout = (td, static, arrays)
        last = self._last_key
        if (last is not None and last[0] is td and not arrays and len(last[1]) == len(statics)
                and all(map(operator.is_, last[1], statics)) and _same_items(last[2], items)):
            # The same structure and the very same static objects as the last
            # call: the same key, without hashing a dataset again.
            return last[3], leaves, layout
        key = _Key((n, self._td_key(td, static), self._static_key(static, statics, last),
                    self._kwargs_key(kwargs), arrays))
        if not arrays:
            self._last_key = (td, statics, items, key)
        return key, leaves, layout

    def _static_positions(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
        """The positions of the static arguments in a call with these arguments."""
        n = len(args)
        out: list[int] = []
        for i in self.static_argnums:
            if not -n <= i < n:
                self._check_call(args, kwargs, "")
                raise ValueError(
                    f"jit: static_argnums names argument {i} but the call has {n} positional "
                    "argument(s); pass it positionally (or drop it from static_argnums: keyword "
                    "arguments are static anyway)"
                )
            if i % n in out:
                raise ValueError(
                    f"jit: static_argnums {self.static_argnums} name argument {i % n} twice in a call "
                    f"with {n} arguments; list each argument once"
                )
            out.append(i % n)
        positions = tuple(sorted(out))
        if len(self._positions) < 64:
            self._positions[n] = positions
        return positions

    def _check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any], method: str) -> None:
        """A TypeError naming the problem if ``f`` cannot take these arguments."""
        sig = _signature(self.fun)
        if sig is None:
            return
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            name = _name_of(self.fun)
            what = (f"jit({name}){method} takes the arguments of a call of {name} (and shows the code "
                    "that call runs)" if method else f"jit({name}) was called with arguments that {name} "
                    "does not take")
            raise TypeError(f"{what}: {e}") from None

    def _td_key(self, td: TreeDef, static: tuple[int, ...]) -> _Key:
        hit = self._td_keys.get(id(td))
        if hit is not None and hit[0] is td:
            return hit[1]
        try:
            key = _Key(_treedef_key(td))
        except Exception as e:  # noqa: BLE001 - a static field or dict key that cannot hash
            raise self._unhashable_field(td, static, e) from e
        if len(self._td_keys) >= 8:
            self._td_keys.clear()
        self._td_keys[id(td)] = (td, key)
        return key

    def _static_key(self, static: tuple[int, ...], statics: tuple[Any, ...], last: Any) -> _Key | None:
        if not statics:
            return None
        if last is not None and len(last[1]) == len(statics) and all(map(operator.is_, last[1], statics)):
            return last[3].parts[2]  # type: ignore[no-any-return]  # the same objects: their key
        try:
            return _Key(_strict(statics))
        except Exception as e:  # noqa: BLE001 - a user's __hash__ may raise anything
            for i, a in zip(static, statics):
                _hashable(a, f"static argument {i}", "static arguments key the cache")
            raise _not_hashable("the static arguments", "they key the cache", e) from e

    @staticmethod
    def _kwargs_key(kwargs: dict[str, Any]) -> _Key | None:
        if not kwargs:
            return None
        try:
            return _Key(_strict(tuple(sorted(kwargs.items()))))
        except Exception as e:  # noqa: BLE001 - a user's __hash__ may raise anything
            for name, v in kwargs.items():
                _hashable(v, f"keyword argument {name!r}", "keyword arguments are static: they key the cache")
            raise _not_hashable("the keyword arguments", "they key the cache", e) from e

    def _unhashable_field(self, td: TreeDef, static: tuple[int, ...], error: Exception) -> TypeError:
        stack: list[tuple[TreeDef, str]] = [(td, "")]
        while stack:
            t, path = stack.pop()
            if t.kind == "dataclass":
                names, static_names, values = t.meta
                for name, v in zip(static_names, values):
                    where = f"the static field {name!r} at {_arg_path(path, static)}"
                    _hashable(v, where, "static fields key the cache")
            labels = _labels(t)
            stack.extend((c, path + lab) for c, lab in zip(t.children, labels))
        what = "a dict key or static field of the traced arguments"
        return _not_hashable(what, "they key the cache", error)

    @staticmethod
    def _as_floats(
        leaves: list[Any], td: TreeDef, static: tuple[int, ...]
    ) -> tuple[list[Any], tuple[tuple[int, int, str], ...]]:
        """Traced leaves as floats, so one compiled path serves ints and
        floats alike (and its simplifications, such as x * 1.0 -> x, keep
        the type eager float arithmetic gives); and the positions, sizes and
        dtypes (byte order) of 1-D float64 numpy arrays, passed as they are."""
        out = []
        arrays = []
        for k, x in enumerate(leaves):
            t = type(x)
            if t is float:
                out.append(x)
            elif t is not bool and isinstance(x, numbers.Real):
                try:
                    out.append(float(x))
                except OverflowError:
                    size = f"an int of {x.bit_length()} bits" if isinstance(x, int) else f"a {t.__name__}"
                    raise ValueError(
                        f"jit: the traced argument leaf at {_leaf_path(td, k, static)} is {size}, too large "
                        "for a float; jit traces numbers as floats: pass a float (float('inf') if that is "
                        "what you mean), or mark the argument static with static_argnums"
                    ) from None
            elif _is_array(x):
                if x.ndim != 1 or x.dtype.kind != "f" or x.dtype.itemsize != 8:
                    raise TypeError(
                        f"jit: the traced argument leaf at {_leaf_path(td, k, static)} is a numpy array of "
                        f"shape {x.shape} and dtype {x.dtype}; jit takes 1-D float64 arrays (a sequence of "
                        "examples, for fg.vmap) and real numbers: convert it (x.astype(float), or x.tolist() "
                        "for nested lists of numbers), or close over it in the function (constant data)"
                    )
                out.append(x)
                arrays.append((k, len(x), x.dtype.str))
            elif t is Expr:  # no transform is active here, so its trace has returned
                raise EscapedNodeError(
                    f"jit: the traced argument leaf at {_leaf_path(td, k, static)} is a node of "
                    f"{x.trace.name}, which has returned; pass its value (float(x)), or call jit "
                    "inside that transform"
                )
            else:
                raise TypeError(
                    f"jit: the traced argument leaf at {_leaf_path(td, k, static)} is a {t.__name__}; jit "
                    "traces real numbers (and 1-D float64 numpy arrays) only. Mark the argument static "
                    "with static_argnums (it is then hashed into the cache key)"
                )
        return out, tuple(arrays)

    # -- calls -----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _active.get():
            return self.fun(*args, **kwargs)
        key, leaves, layout = self._split(args, kwargs)
        if core.DEBUG_NANS:
            return self.fun(*self._arguments(args, leaves, layout), **kwargs)
        for pid in self._ids(key):  # the newest path first
            path = self._paths.get(pid)
            if path is None:
                continue
            try:
                flat = path.run(leaves)
            except GuardFailed:
                continue
            with self._lock:
                self._hits += 1
                if pid in self._paths:
                    self._paths.move_to_end(pid)
            return path.build(flat) if path.build is not None else tree_unflatten(path.out_tree, flat)
        path = self._new_path(key, args, kwargs, leaves, layout)
        try:
            flat = path.run(leaves)
        except GuardFailed:
            raise RuntimeError(
                f"jit internal error: the path just traced for {_name_of(self.fun)} refuses the "
                "arguments it was traced with (one of its guards fails on them); please report it "
                "with the function"
            ) from None
        return path.build(flat) if path.build is not None else tree_unflatten(path.out_tree, flat)

    def _ids(self, key: _Key) -> list[tuple[Hashable, int]]:
        try:
            with self._lock:
                ids = list(self._by_key.get(key, ()))
        except Exception as e:  # noqa: BLE001 - a static value's __eq__ may raise anything
            raise TypeError(
                "jit: comparing this call's static arguments (or keyword arguments, dict keys, static "
                f"fields) with an earlier call's raised {type(e).__name__}: {e}. They key the cache, so "
                "their == must return a bool"
            ) from e
        ids.reverse()
        return ids

    def _arguments(self, args: tuple[Any, ...], leaves: list[Any], layout: Any) -> list[Any]:
        """The call's arguments with the traced ones rebuilt from ``leaves``."""
        td, static, _ = layout
        dynamic = iter(tree_unflatten(td, leaves))
        return [a if i in static else next(dynamic) for i, a in enumerate(args)]

    def _new_path(
        self, key: _Key, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Any
    ) -> _Path:
        path = self._trace(args, kwargs, leaves, layout)
        self._flat.prime(None, layout[0])  # part of tracing and compiling, not of later calls
        with self._lock:
            self._misses += 1
            self._traces += 1
            self._counter += 1
            pid = (key, self._counter)
            self._paths[pid] = path
            self._by_key.setdefault(key, []).append(pid)
            while len(self._paths) > self.cache_size:
                old, _ = self._paths.popitem(last=False)
                siblings = self._by_key[old[0]]
                siblings.remove(old)
                if not siblings:
                    del self._by_key[old[0]]
        return path

    def _trace(self, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Any) -> _Path:
        td, static, arrays = layout
        with new_trace("jit") as tr:
            tr.guards = []
            tr.concrete_ok = False
            nodes = [make_node(tr, x, None, ()) for x in leaves]
            seen: list[Any] = list(nodes)
            for k, n, _ in arrays:
                seen[k] = TracedArray(nodes[k], n, leaves[k].dtype, f"argument {_leaf_path(td, k, static)}")
            out = self.fun(*self._arguments(args, seen, layout), **kwargs)
            outs, out_td = tree_flatten(out)
            outs = [o.node if type(o) is TracedArray else o for o in outs]
            _check_outputs(outs, out_td, tr)
            run, source, n_guards = compile_trace(
                tr, nodes, outs, _name_of(self.fun),
                MAX_COMPILED_OPS if self.max_compiled_ops is None else self.max_compiled_ops,
            )
            return _Path(run, out_td, source, n_guards, unflattener(out_td))

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated code of the path these arguments take (traced if new)."""
        if _active.get():
            raise TypeError(
                f"jit({_name_of(self.fun)}).source(...) was called inside another transform, where a "
                "jitted function runs eagerly and has no code; call it outside"
            )
        self._check_call(args, kwargs, ".source(*args)")
        key, leaves, layout = self._split(args, kwargs)
        for pid in self._ids(key):
            path = self._paths.get(pid)
            if path is None:
                continue
            try:
                path.run(leaves)
            except GuardFailed:
                continue
            return path.source
        return self._new_path(key, args, kwargs, leaves, layout).source

    def __repr__(self) -> str:
        return f"jit({getattr(self.fun, '__name__', self.fun)!r})"


def _same_items(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Keyword arguments with the same names, in order, and the very same values."""
    return len(a) == len(b) and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a, b))


def _hashable(value: Any, what: str, why: str) -> None:
    try:
        hash(_strict(value))
    except Exception as e:  # noqa: BLE001 - a user's __hash__ may raise anything
        raise _not_hashable(what, why, e) from e


def _not_hashable(what: str, why: str, error: Exception) -> TypeError:
    return TypeError(
        f"jit: {what} must be hashable ({why}), but hashing it raised {type(error).__name__}: {error}; "
        "pass lists as tuples and dicts as pyrsistent pmaps, or pass the data as a traced argument"
    )


def _labels(td: TreeDef) -> list[str]:
    if td.kind == "map":
        return [f"[{k!r}]" for k in td.meta]
    if td.kind == "dataclass":
        return [f".{n}" for n in td.meta[0]]
    if td.kind == "namedtuple":
        return [f".{n}" for n in td.node_type._fields]
    return [f"[{i}]" for i in range(len(td.children))]


def _arg_path(path: str, static: tuple[int, ...]) -> str:
    """A path in the tuple of traced arguments as a path in the call's
    arguments: ``[j]...`` names the j-th traced one, not the j-th argument."""
    if not static or not path.startswith("["):
        return path
    j = int(path[1 : path.index("]")])
    traced = [i for i in range(j + len(static) + 1) if i not in static]
    return f"[{traced[j]}]{path[path.index(']') + 1:]}"


def _leaf_path(td: TreeDef, k: int, static: tuple[int, ...]) -> str:
    return _arg_path(tree_paths(td)[k], static)


_PLAIN = frozenset({float, int, str, bool, bytes, complex, type(None)})
_CODE = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


def _check_outputs(outs: list[Any], out_td: TreeDef, tr: Any) -> None:
    """Refuse outputs that would carry a node out of the trace, or that a
    cached path cannot return again (it returns the same object each call)."""
    paths: list[str] | None = None
    for k, o in enumerate(outs):
        t = type(o)
        if t in _PLAIN or (t is Expr and o.trace is tr):
            continue
        if t is Expr:
            lower(tr, o)  # raises for a node of a transform that has returned
        if paths is None:
            paths = tree_paths(out_td)
        where = f"the output at {paths[k]}" if paths[k] else "the output"
        if isinstance(o, _CODE):
            raise TypeError(
                f"jit: {where} is a {t.__name__}; jit returns a function's non-pytree outputs as they "
                f"are, the same object on every call, and a {t.__name__} runs only once: return its "
                "values in a tuple or list instead (e.g. tuple(...))"
            )
        if t is Expr or _holds_node(o):
            raise EscapedNodeError(
                f"jit: {where} is a {t.__name__} holding a traced value (a node); traced values leave a "
                "jitted function only as pytree leaves (numbers in tuples, lists, dicts, dataclasses): "
                f"return them in such a container instead of inside a {t.__name__}"
            )


def _holds_node(obj: Any, budget: int = 100_000) -> bool:
    """Whether a node is reachable from ``obj`` (a bounded search of what it
    refers to, not through modules, classes or functions' globals)."""
    seen: set[int] = set()
    todo = [obj]
    while todo and budget > 0:
        x = todo.pop()
        budget -= 1
        if type(x) is Expr:
            return True
        if id(x) in seen or type(x) in _PLAIN or isinstance(x, (type, types.ModuleType, types.CodeType)):
            continue
        seen.add(id(x))
        if isinstance(x, types.FunctionType):
            todo.extend(x.__closure__ or ())  # its cells, whose referents are their contents
            todo.extend((x.__defaults__, x.__kwdefaults__))
        else:
            todo.extend(gc.get_referents(x))
    return False
