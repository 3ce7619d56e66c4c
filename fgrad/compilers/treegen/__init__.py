"""Compiled (un)flattening for one pytree structure: jit's per-call overhead.

A jitted training step takes a model and returns a model: flattening the
arguments and rebuilding the results are a Python walk over every container
on every call. For a structure seen before, these functions do the same work
as straight-line code generated once per structure:

- :func:`unflattener` builds the tree from its leaves in one expression;
- :func:`flattener` reads the leaves of a tree *assumed* to have the
  structure, checking every container's type, length and static values on
  the way, and returns None when anything differs (the caller then falls
  back to :func:`fgrad.engine.tree.tree_flatten`).

Only identifiers made here reach the source; types, field names, keys and
static values stay in Python objects beside it (``K[i]``).

Structures nested deeper than :data:`MAX_DEPTH` are not compiled (the
generic walks serve any depth), and the caches below are bounded both in
entries and in the leaves of the structures they hold.

The flattener's generator is in ``treegen.flattening``, the unflattener's in
``treegen.unflattening``, and the source writer both use (with the checks of
what may be compiled) in ``treegen.source``. This module holds the caches of
compiled code: :class:`FlattenCache` (jit keeps one per jitted function) and
those :mod:`fgrad.engine.tree` consults through its hook ``walk._fast``,
filled in here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from fgrad.compilers.treegen.flattening import flattener
from fgrad.compilers.treegen.source import MAX_DEPTH, MAX_LEAVES
from fgrad.compilers.treegen.unflattening import unflattener
from fgrad.engine.tree import TreeDef, treedef_equal
from fgrad.engine.tree import walk as _walk

__all__ = ["unflattener", "flattener", "FlattenCache", "MAX_LEAVES", "MIN_LEAVES", "MAX_DEPTH"]

# Small structures keep the generic walk, for tree_flatten/tree_unflatten
# (jit compiles its own whatever their size).
MIN_LEAVES = 16
# What the caches below may hold in all: the leaves of their structures
# (their compiled code is about as big).
MAX_CACHED_LEAVES = 600_000  # (two structures of MAX_LEAVES)


# tree_flatten / tree_unflatten's cache --------------------------------------
# A structure is compiled the second time it is met (once is often a one-off),
# keyed by the tree's top-level type (flatten) or the TreeDef object (unflatten).


class FlattenCache:
    """Compiled flatteners for the float trees met most recently, a few per
    key (a tree's type; a GAN updates two MLPs in turn). A structure is
    compiled the second time it is met. Trees whose leaves are not all floats
    are not remembered: the compiled code serves only float trees. Bounded in
    keys, entries per key and leaves held in all (then it starts afresh)."""

    def __init__(self, per_key: int = 4, max_keys: int = 256, max_leaves: int = MAX_CACHED_LEAVES) -> None:
        # key -> [treedef, times met (or _REFUSED), flattener], newest first
        self.entries: dict[Any, list[list[Any]]] = {}
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_leaves = max_leaves
        self.leaves = 0  # of the structures held

    def flatten(self, key: Any, tree: Any) -> tuple[list[Any], TreeDef] | None:
        for entry in self.entries.get(key, ()):
            if entry[2] is not None:
                try:
                    leaves = entry[2](tree)
                except Exception:  # noqa: BLE001 - a container whose length or fields lie: the general walk says
                    return None
                if leaves is not None:
                    return leaves, entry[0]
        return None

    def seen(self, key: Any, td: TreeDef, leaves: list[Any]) -> None:
        """A tree the compiled flatteners did not take, walked generically."""
        if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES or not _FLOATS.issuperset(map(type, leaves)):
            return
        for entry in self.entries.get(key, ()):
            # An equal structure not compiled yet. (A compiled one refused
            # this tree: its static values are other objects. It is a new
            # structure for the compiled code.)
            if entry[2] is None and _same(entry[0], td):
                if entry[1] is _REFUSED:
                    return
                entry[1] += 1
                if entry[1] >= 2:
                    # Compiled from this tree, so it must hand back this
                    # tree's TreeDef: an "equal" one may hold static values
                    # that are equal but not the same (1 and True).
                    compiled = flattener(td)
                    entry[0], entry[1], entry[2] = td, _REFUSED if compiled is None else entry[1], compiled
                return
        self._add(key, [td, 1, None])

    def prime(self, key: Any, td: TreeDef) -> None:
        """Compile ``td`` now (jit, for the structure it has just traced)."""
        if MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
            compiled = flattener(td)
            self._add(key, [td, _REFUSED if compiled is None else 2, compiled])

    def _add(self, key: Any, entry: list[Any]) -> None:
        entries = self.entries.get(key)
        if (
            entries is None
            and len(self.entries) >= self.max_keys
            or (self.leaves + entry[0].num_leaves > self.max_leaves)
        ):
            self.entries.clear()
            self.leaves, entries = 0, None
        if entries is None:
            entries = self.entries[key] = []
        entries.insert(0, entry)
        self.leaves += entry[0].num_leaves
        for old in entries[self.per_key :]:
            self.leaves -= old[0].num_leaves
        del entries[self.per_key :]


_REFUSED: Any = "refused"  # an entry's count once its structure would not compile: not tried again
_FLOATS = frozenset({float})
_by_type = FlattenCache()
_builders: dict[tuple[int, bool], list[Any]] = {}  # (id(td), persistent) -> [td, uses, builder]
_MAX_ENTRIES = 256
_builder_leaves = 0  # of the structures in _builders


def flatten(tree: Any) -> tuple[list[Any], TreeDef] | None:
    return _by_type.flatten(type(tree), tree)


def seen(tree: Any, td: TreeDef, leaves: list[Any]) -> None:
    _by_type.seen(type(tree), td, leaves)


def _same(a: TreeDef, b: TreeDef) -> bool:
    return treedef_equal(a, b)  # (any depth; static values that cannot compare are not the same)


def builder(td: TreeDef, persistent: bool) -> Callable[[Sequence[Any]], Any] | None:
    global _builder_leaves
    if not MIN_LEAVES <= td.num_leaves <= MAX_LEAVES:
        return None
    key = (id(td), persistent)
    entry = _builders.get(key)
    if entry is None or entry[0] is not td:  # (a new TreeDef, perhaps at a recycled id)
        if entry is not None:
            _builder_leaves -= entry[0].num_leaves
            del _builders[key]
        if len(_builders) >= _MAX_ENTRIES or _builder_leaves + td.num_leaves > MAX_CACHED_LEAVES:
            _builders.clear()
            _builder_leaves = 0
        _builders[key] = [td, 1, None]
        _builder_leaves += td.num_leaves
        return None
    if entry[1] is _REFUSED:
        return None
    entry[1] += 1
    if entry[2] is None:
        entry[2] = unflattener(td, persistent)
        if entry[2] is None:
            entry[1] = _REFUSED
    return entry[2]  # type: ignore[no-any-return]


_walk._fast = sys.modules[__name__]
