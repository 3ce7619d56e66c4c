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
and indexing), and one path serves every array of its length and dtype.
Keys are made in ``fgrad.compilers.jit.keys``; what crosses the edges of a trace (the
arguments' leaves in, the outputs out) is checked in ``fgrad.compilers.jit.edges``.

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

import contextlib
import functools
import inspect
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fgrad.compilers.codegen import GuardFailed, compile_trace
from fgrad.compilers.jit.edges import TracedArray, as_floats, check_outputs, leaf_path, unhashable_field
from fgrad.compilers.jit.keys import Key, key_of
from fgrad.compilers.treegen import FlattenCache, unflattener
from fgrad.engine import core
from fgrad.engine.core import make_node
from fgrad.engine.trace import Trace, active_traces, traced
from fgrad.engine.tree import TreeDef, tree_flatten, tree_unflatten, treedef_key

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
            of examples (for ``fg.vmap``), keyed by their length and dtype.
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
    if (
        not isinstance(nums, Sequence)
        or isinstance(nums, str)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in nums)
    ):
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
    return sum(
        k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds
    )


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
        # Guards the cache's changes (a new path, evictions). An RLock: its
        # owner can be asked, so a release after an interrupt is safe to retry.
        self._lock = threading.RLock()
        self._counter = 0
        self._traces = self._hits = self._misses = 0
        self._flat = FlattenCache(per_key=4, max_keys=1)  # compiled flatteners of the arguments
        # The last call's structure, static objects and keyword items, and its key.
        self._last_key: tuple[TreeDef, tuple[Any, ...], tuple[Any, ...], Key] | None = None
        self._positions: dict[int, tuple[int, ...]] = {}  # number of arguments -> static positions
        self._td_keys: dict[int, tuple[TreeDef, Key]] = {}  # id(TreeDef) -> (it, its key), a few

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._traces, self._hits, self._misses, len(self._paths))

    # -- the call's key -------------------------------------------------------------------
    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Key, list[Any], Any]:
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
                leaves, arrays = as_floats(leaves, td, static)
        statics = tuple(args[i] for i in static) if static else ()
        items = tuple(kwargs.items()) if kwargs else ()
        layout = (td, static, arrays)
        last = self._last_key
        if (
            last is not None
            and last[0] is td
            and not arrays
            and len(last[1]) == len(statics)
            and all(map(operator.is_, last[1], statics))
            and _same_items(last[2], items)
        ):
            # The same structure and the very same static objects as the last
            # call: the same key, without hashing a dataset again.
            return last[3], leaves, layout
        key = Key(
            (
                n,
                self._td_key(td, static),
                self._static_key(static, statics, last),
                self._kwargs_key(kwargs, items, last),
                arrays,
            )
        )
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
            what = (
                f"jit({name}){method} takes the arguments of a call of {name} (and shows the code "
                "that call runs)"
                if method
                else f"jit({name}) was called with arguments that {name} does not take"
            )
            raise TypeError(f"{what}: {e}") from None

    def _td_key(self, td: TreeDef, static: tuple[int, ...]) -> Key:
        hit = self._td_keys.get(id(td))
        if hit is not None and hit[0] is td:
            return hit[1]
        try:
            key = Key((treedef_key(td),))
        except Exception as e:  # noqa: BLE001 - a static field or dict key that cannot hash
            raise unhashable_field(td, static, e) from e
        if len(self._td_keys) >= 8:
            self._td_keys.clear()
        self._td_keys[id(td)] = (td, key)
        return key

    @staticmethod
    def _static_key(static: tuple[int, ...], statics: tuple[Any, ...], last: Any) -> Key | None:
        if not statics:
            return None
        if last is not None and len(last[1]) == len(statics) and all(map(operator.is_, last[1], statics)):
            return last[3].parts[2]  # type: ignore[no-any-return]  # the same objects: their key
        return key_of(statics, [f"static argument {i}" for i in static], "static arguments key the cache")

    @staticmethod
    def _kwargs_key(kwargs: dict[str, Any], given: tuple[Any, ...], last: Any) -> Key | None:
        if not kwargs:
            return None
        if last is not None and _same_items(last[2], given):
            return last[3].parts[3]  # type: ignore[no-any-return]  # the same objects: their key
        items = tuple(sorted(kwargs.items()))
        names = [f"keyword argument {name!r}" for name, _ in items]
        return key_of(items, names, "keyword arguments are static: they key the cache")

    # -- calls -----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if active_traces():
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
            # No lock on the hot path (an interrupted ``with lock`` could leave
            # it held): each step is one operation the interpreter lock keeps
            # whole, and a path evicted meanwhile is simply not moved.
            self._hits += 1
            with contextlib.suppress(KeyError):
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

    def _ids(self, key: Key) -> list[tuple[Hashable, int]]:
        try:
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
        self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Any
    ) -> _Path:
        path = self._trace(args, kwargs, leaves, layout)
        self._flat.prime(None, layout[0])  # part of tracing and compiling, not of later calls
        lock = self._lock
        try:
            try:
                lock.acquire()
                self._add(key, path)
            finally:
                _release(lock)
        finally:
            _release(lock)  # again, should an interrupt have cut the first short
        return path

    def _add(self, key: Key, path: _Path) -> None:
        self._misses += 1
        self._traces += 1
        self._counter += 1
        pid = (key, self._counter)
        while len(self._paths) >= self.cache_size:  # room first: interrupted, the bound still holds
            old, _ = self._paths.popitem(last=False)
            siblings = self._by_key.get(old[0], [])
            if old in siblings:
                siblings.remove(old)
            if not siblings:
                self._by_key.pop(old[0], None)
        self._paths[pid] = path
        self._by_key.setdefault(key, []).append(pid)

    def _trace(self, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Any) -> _Path:
        td, static, arrays = layout

        def body(tr: Trace) -> _Path:
            tr.guards = []
            tr.concrete_ok = False
            nodes = [make_node(tr, x, None, ()) for x in leaves]
            seen: list[Any] = list(nodes)
            for k, _, _ in arrays:
                seen[k] = TracedArray(nodes[k], f"argument {leaf_path(td, k, static)}")
            out = self.fun(*self._arguments(args, seen, layout), **kwargs)
            outs, out_td = tree_flatten(out)
            outs = [o.node if type(o) is TracedArray else o for o in outs]
            check_outputs(outs, out_td, tr)
            run, source, n_guards = compile_trace(
                tr,
                nodes,
                outs,
                _name_of(self.fun),
                MAX_COMPILED_OPS if self.max_compiled_ops is None else self.max_compiled_ops,
            )
            return _Path(run, out_td, source, n_guards, unflattener(out_td))

        return traced("jit", body)

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated code of the path these arguments take (traced if new)."""
        if active_traces():
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


def _release(lock: Any) -> None:
    """Release ``lock`` if this thread holds it (an RLock can say)."""
    if lock._is_owned():
        lock.release()
