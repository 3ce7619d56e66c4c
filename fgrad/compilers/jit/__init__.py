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
Where the parts live, in ``fgrad.compilers.jit``: ``calls`` takes a call apart
(its key, its traced leaves), with keys made in ``keys``; ``paths`` holds the
compiled paths per key; ``tracing`` traces and compiles a new path; what
crosses the edges of a trace (the arguments' leaves in, the outputs out) is
checked in ``edges``. This module is the front: :func:`jit` and
:class:`Jitted`, the callable it returns.

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

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from fgrad.compilers.codegen import GuardFailed
from fgrad.compilers.jit.calls import CallSplitter, Layout, arguments_from, check_call, name_of, signature
from fgrad.compilers.jit.edges import TracedArray
from fgrad.compilers.jit.keys import Key
from fgrad.compilers.jit.paths import CompiledPath, PathCache
from fgrad.compilers.jit.tracing import trace_path
from fgrad.engine import core
from fgrad.engine.trace import active_traces
from fgrad.engine.tree import tree_unflatten
from fgrad.transforms import chunks

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
                    f"argument(s) at most ({name_of(f)} takes {positional}); number them from 0 "
                    "(negative numbers count from the end)"
                )
    return Jitted(f, nums, cache_size, max_compiled_ops)


def _positional_count(f: Callable[..., Any]) -> int | None:
    """How many positional arguments ``f`` takes, or None if unknown or any
    (a wrapper taking ``*args``, such as ``fg.grad(g)``, is not looked
    through: a decorator may change the arguments)."""
    sig = signature(f, follow_wrapped=False)
    if sig is None:
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    return sum(
        k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds
    )


class Jitted:
    """A jit-compiled function; see :func:`jit`. A call is split into its key
    and leaves (``CallSplitter``), served by a cached path (``PathCache``),
    or else traced along a new path (``trace_path``)."""

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
        self._splitter = CallSplitter(f, static_argnums)
        self._cache = PathCache(cache_size)
        # The call's key, traced leaves and layout (bound once: every call asks).
        self._split = self._splitter.split

    # The cache's parts, as tests and benchmarks/overhead.py look at them.
    @property
    def _paths(self) -> OrderedDict[tuple[Hashable, int], CompiledPath]:
        return self._cache.paths

    @property
    def _by_key(self) -> dict[Hashable, list[tuple[Hashable, int]]]:
        return self._cache.by_key

    @property
    def _lock(self) -> threading.RLock:
        return self._cache.lock

    def cache_info(self) -> CacheInfo:
        cache = self._cache
        return CacheInfo(cache.traces, cache.hits, cache.misses, len(cache.paths))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if active_traces():
            return self.fun(*args, **kwargs)
        key, leaves, layout = self._split(args, kwargs)
        if core.DEBUG_NANS:
            return self.fun(*arguments_from(args, leaves, layout), **kwargs)
        found = self._cache.lookup(key, leaves)
        if found is not None:
            path, flat = found
        else:
            path = self._new_path(key, args, kwargs, leaves, layout)
            try:
                flat = path.run(leaves)
            except GuardFailed:
                raise RuntimeError(
                    f"jit internal error: the path just traced for {name_of(self.fun)} refuses the "
                    "arguments it was traced with (one of its guards fails on them); please report it "
                    "with the function"
                ) from None
        return path.build(flat) if path.build is not None else tree_unflatten(path.out_tree, flat)

    def _new_path(
        self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any], layout: Layout
    ) -> CompiledPath:
        limit = MAX_COMPILED_OPS if self.max_compiled_ops is None else self.max_compiled_ops
        path = trace_path(self.fun, args, kwargs, leaves, layout, limit)
        self._splitter.prime(layout)
        self._cache.store(key, path)
        return path

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated code of the path these arguments take (traced if new)."""
        if active_traces():
            raise TypeError(
                f"jit({name_of(self.fun)}).source(...) was called inside another transform, where a "
                "jitted function runs eagerly and has no code; call it outside"
            )
        check_call(self.fun, args, kwargs, ".source(*args)")
        key, leaves, layout = self._split(args, kwargs)
        found = self._cache.lookup(key, leaves, touch=False)
        if found is not None:
            return found[0].source
        return self._new_path(key, args, kwargs, leaves, layout).source

    def __repr__(self) -> str:
        return f"jit({getattr(self.fun, '__name__', self.fun)!r})"


def _compile_body(fun: Callable[..., Any]) -> Callable[..., Any]:
    """A chunked vmap's body compiled (``fgrad.transforms.chunks``): jit of
    ``fun(shared, *columns)`` for one chunk length. A body has no guards,
    so once traced its one path is called with the leaves as they come (the
    shared floats, then the columns' arrays): a body reads thousands of
    shared floats per chunk, which jit's call would check one by one."""
    jitted = Jitted(fun, (), 1)

    def run(shared: tuple[Any, ...], *columns: Any) -> Any:
        paths = jitted._paths
        if len(paths) != 1:
            return jitted(shared, *columns)  # (traces it)
        path = next(iter(paths.values()))
        flat = path.run([*shared, *columns])
        return path.build(flat) if path.build is not None else tree_unflatten(path.out_tree, flat)

    return run


chunks.compile_hook = _compile_body  # a chunked vmap's body runs compiled, chunk by chunk
