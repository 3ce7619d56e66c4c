"""jit's path cache: the compiled paths of one jitted function, by call key.

A key may hold several paths (one per way through ``f``'s branches); a call
tries them newest first and takes the first whose guards pass. All paths
together form one LRU bounded by ``cache_size``.

Looking a path up takes no lock (an interrupted ``with lock`` could leave it
held): each step is one operation the interpreter lock keeps whole, and a
path evicted meanwhile is simply not found or not moved. Adding a path and
evicting old ones take the lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from fgrad.compilers.codegen import GuardFailed
from fgrad.compilers.jit.keys import Key
from fgrad.engine.tree import TreeDef

__all__ = ["CompiledPath", "PathCache"]


@dataclass(frozen=True)
class CompiledPath:
    """One traced path: its compiled code, the structure of its outputs and
    the code's source."""

    run: Callable[[Sequence[Any]], tuple[Any, ...]]  # the leaves in, the outputs' leaves out (or GuardFailed)
    out_tree: TreeDef
    source: str
    n_guards: int
    build: Callable[[Sequence[Any]], Any] | None  # the outputs' compiled unflatten
    traces: int = 1  # times f was traced for it (2: again with vmap's loop)


class PathCache:
    """The compiled paths of a jitted function, at most ``size`` of them, and
    the counts ``cache_info()`` reports."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.paths: OrderedDict[tuple[Hashable, int], CompiledPath] = OrderedDict()  # oldest first
        self.by_key: dict[Hashable, list[tuple[Hashable, int]]] = {}  # key -> its paths' ids, oldest first
        # Guards the cache's changes (a new path, evictions). An RLock: its
        # owner can be asked, so a release after an interrupt is safe to retry.
        self.lock = threading.RLock()
        self.counter = 0  # numbers the paths: an id is (key, number)
        self.traces = self.hits = self.misses = 0

    def lookup(
        self, key: Key, leaves: list[Any], touch: bool = True
    ) -> tuple[CompiledPath, tuple[Any, ...]] | None:
        """The newest path held for ``key`` whose guards pass on ``leaves``,
        and the outputs' leaves it computed; None if there is none. With
        ``touch`` (a call, not ``source()``) it counts as a hit and becomes
        the most recently used path. Takes no lock."""
        try:
            ids = list(self.by_key.get(key, ()))  # (a copy: another thread may add or evict)
        except Exception as e:  # noqa: BLE001 - a static value's __eq__ may raise anything
            raise TypeError(
                "jit: comparing this call's static arguments (or keyword arguments, dict keys, static "
                f"fields) with an earlier call's raised {type(e).__name__}: {e}. They key the cache, so "
                "their == must return a bool"
            ) from e
        paths = self.paths
        for pid in reversed(ids):  # the newest path first
            path = paths.get(pid)
            if path is None:
                continue
            try:
                flat = path.run(leaves)
            except GuardFailed:
                continue
            if touch:
                self.hits += 1
                with contextlib.suppress(KeyError):  # (evicted meanwhile)
                    paths.move_to_end(pid)
            return path, flat
        return None

    def store(self, key: Key, path: CompiledPath) -> None:
        """Hold ``path`` as the newest for ``key``, a miss just traced."""
        lock = self.lock
        try:
            try:
                lock.acquire()
                self._add(key, path)
            finally:
                _release(lock)
        finally:
            _release(lock)  # again, should an interrupt have cut the first short

    def _add(self, key: Key, path: CompiledPath) -> None:
        self.misses += 1
        self.traces += path.traces
        self.counter += 1
        pid = (key, self.counter)
        while len(self.paths) >= self.size:  # room first: interrupted, the bound still holds
            old, _ = self.paths.popitem(last=False)
            siblings = self.by_key.get(old[0], [])
            if old in siblings:
                siblings.remove(old)
            if not siblings:
                self.by_key.pop(old[0], None)
        self.paths[pid] = path
        self.by_key.setdefault(key, []).append(pid)


def _release(lock: Any) -> None:
    """Release ``lock`` if this thread holds it (an RLock can say)."""
    if lock._is_owned():
        lock.release()
