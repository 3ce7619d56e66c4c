"""jit: trace once per input structure, compile to straight-line Python, guard.

``fg.jit(f)`` traces ``f`` on nodes the first time it sees an argument
structure, then emits a Python function with one statement per needed node
(``v12 = v3 * v7``, ``v13 = f2(v12)``) and compiles it. Later calls with the
same structure run that function on the arguments' leaves: no nodes, no
tape, no pytree walk beyond flattening the arguments.

Comparisons of traced values made while tracing (``if x > 0:``) are recorded
as guards and checked by the compiled code; when one fails, ``f`` is traced
again along the other path, which is cached beside the first (a bounded LRU
over all paths). Results are bit-for-bit those of calling ``f`` eagerly: the
compiled code performs the same float operations in the same order.

What reaches the generated source: identifiers made here (``x0``, ``v12``,
``f3``, ``K[0]``) and ``repr`` of finite floats and ints. Everything else
(dict keys, strings, functions) stays in Python objects next to the code.

Inside another transform (``grad(jit(f))``) a jitted function simply calls
``f``: the outer transform needs the graph, and the result is the same.
"""

from __future__ import annotations

import functools
import numbers
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .codegen import GuardFailed, compile_trace
from .core import Trace, _active, make_node, traced
from .transforms import lower
from .tree import TreeDef, tree_flatten, tree_paths, tree_unflatten
from .treegen import FlattenCache, unflattener

__all__ = ["jit", "Jitted", "CacheInfo"]

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
    looks the key up several times."""

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
        static_argnums: arguments that are hashed (with their types) into
            the cache key instead of traced (sizes, flags, fixed data).
            They must be hashable and immutable, as in JAX: a call with
            the very same objects as the last call reuses its key without
            hashing them again (a dataset can take longer to hash than the
            step takes to run).
            Keyword arguments are static too. Traced leaves must be real
            numbers; ints among them are traced as floats.
        cache_size: how many compiled paths to keep (least recently used go).
        max_compiled_ops: paths with more operations run as a table-driven
            program instead of compiled source (default ``MAX_COMPILED_OPS``).

    Returns:
        A callable with ``cache_info()`` and ``source(*args)``.

    >>> import fgrad as fg
    >>> step = jit(fg.grad(lambda x: x * 2 if x > 0 else -x))
    >>> step(3.0), step(-3.0), step(5.0)
    (2.0, -1.0, 2.0)
    >>> step.cache_info()
    CacheInfo(traces=2, hits=1, misses=2, entries=2)
    """
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in nums):
        raise TypeError(f"jit: static_argnums must be an int or a tuple of ints, got {static_argnums!r}")
    if not isinstance(cache_size, int) or cache_size < 1:
        raise ValueError(f"jit: cache_size must be a positive int, got {cache_size!r}")
    if max_compiled_ops is not None and (not isinstance(max_compiled_ops, int) or max_compiled_ops < 0):
        raise ValueError(f"jit: max_compiled_ops must be a non-negative int, got {max_compiled_ops!r}")
    return Jitted(f, nums, cache_size, max_compiled_ops)


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
        self._last_key: tuple[TreeDef, tuple[Any, ...], _Key] | None = None

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._traces, self._hits, self._misses, len(self._paths))

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Hashable, list[Any], Any]:
        n = len(args)
        static = []
        for i in self.static_argnums:
            if not -n <= i < n:
                raise ValueError(f"jit: static_argnums names argument {i} but the call has {n} arguments")
            static.append(i % n)
        dynamic = tuple(a for i, a in enumerate(args) if i not in static)
        fast = self._flat.flatten(None, dynamic)  # a structure met before: compiled code
        if fast is not None:
            leaves, td = fast
        else:
            leaves, td = tree_flatten(dynamic)
            self._flat.seen(None, td, leaves)
            kinds = set(map(type, leaves))
            if not kinds <= {float}:
                leaves = self._as_floats(leaves, td)
        statics = tuple(args[i] for i in sorted(static))
        last = self._last_key
        if (not kwargs and last is not None and last[0] is td and len(last[1]) == len(statics)
                and all(map(operator.is_, last[1], statics))):
            # The same structure and the very same static objects as the last
            # call: the same key, without hashing a dataset again.
            return last[2], leaves, (td, sorted(static))
        try:
            # Static values are keyed with their types: 3 == 3.0 and 1 == True,
            # but a function may well branch on the type of a static argument.
            key = _Key((
                td,
                tuple((i, type(args[i]), args[i]) for i in sorted(static)),
                tuple(sorted((k, type(v), v) for k, v in kwargs.items())),
            ))
        except TypeError:
            raise TypeError(
                "jit: static arguments and keyword arguments must be hashable (they key the "
                "cache); pass lists as tuples, or pass the data as a traced argument"
            ) from None
        if not kwargs:
            self._last_key = (td, statics, key)
        return key, leaves, (td, sorted(static))

    @staticmethod
    def _as_floats(leaves: list[Any], td: Any) -> list[Any]:
        """Traced leaves as floats, so one compiled path serves ints and
        floats alike (and its simplifications, such as x * 1.0 -> x, keep
        the type eager float arithmetic gives)."""
        out = []
        for k, x in enumerate(leaves):
            t = type(x)
            if t is float:
                out.append(x)
            elif t is not bool and isinstance(x, numbers.Real):
                out.append(float(x))
            else:
                where = tree_paths(td)[k]
                raise TypeError(
                    f"jit: the traced argument leaf at {where} is a {t.__name__}; jit traces "
                    "real numbers only. Mark the argument static with static_argnums "
                    "(it is then hashed into the cache key)"
                )
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _active.get():
            return self.fun(*args, **kwargs)
        key, leaves, layout = self._split(args, kwargs)
        with self._lock:
            ids = list(self._by_key.get(key, ()))
        for pid in reversed(ids):  # the newest path first
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
        path, result = self._trace(args, kwargs, leaves, layout)
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
        return result

    def _trace(self, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Any) -> Any:
        td, static = layout

        def body(tr: Trace) -> Any:
            tr.guards = []
            tr.concrete_ok = False
            nodes = [make_node(tr, x, None, ()) for x in leaves]
            dynamic = iter(tree_unflatten(td, nodes))
            full = [a if i in static else next(dynamic) for i, a in enumerate(args)]
            out = self.fun(*full, **kwargs)
            outs, out_td = tree_flatten(out)
            result = tree_unflatten(out_td, [lower(tr, o) for o in outs])
            run, source, n_guards = compile_trace(
                tr, nodes, outs, getattr(self.fun, "__name__", "f"),
                MAX_COMPILED_OPS if self.max_compiled_ops is None else self.max_compiled_ops,
            )
            return _Path(run, out_td, source, n_guards, unflattener(out_td)), result

        return traced("jit", body)

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated code of the path these arguments take (traced if new)."""
        key, leaves, layout = self._split(args, kwargs)
        for _ in range(2):
            with self._lock:
                ids = list(self._by_key.get(key, ()))
            for pid in reversed(ids):
                path = self._paths.get(pid)
                if path is None:
                    continue
                try:
                    path.run(leaves)
                except GuardFailed:
                    continue
                return path.source
            self(*args, **kwargs)
        raise RuntimeError("jit: no cached path accepts these arguments")  # pragma: no cover

    def __repr__(self) -> str:
        return f"jit({getattr(self.fun, '__name__', self.fun)!r})"
