"""Pytrees at the edges of size: caches that stay bounded (and let classes
go), trees of any depth, trees that contain themselves."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, make_dataclass
from typing import Any

import pytest
from pyrsistent import PMap, PVector, pmap, pvector

import fgrad as fg
from fgrad.compilers import treegen
from fgrad.engine.tree import (
    LEAF,
    TreeDef,
    structure_mismatch,
    tree_paths,
    treedef_equal,
    treedef_key,
    unflatten_persistent,
)
from fgrad.engine.tree import walk as tree_module

DEPTH = 10_000


def traced_growth(step: Any, warm: range, measured: range) -> int:
    """Bytes still allocated after ``step`` ran over ``measured``, once
    ``warm`` has filled whatever bounded caches there are."""
    for i in warm:
        step(i)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in measured:
            step(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# Bounded caches ----------------------------------------------------------------------


def test_memory_stays_bounded_across_thousands_of_list_lengths() -> None:
    # Regression: a cache of leaf runs keyed by length kept one tuple per
    # length met (8,000 lengths: 400 MiB).
    def step(n: int) -> None:
        leaves, td = fg.tree_flatten([0.5] * n)
        fg.tree_unflatten(td, leaves)

    growth = traced_growth(step, range(1, 600), range(600, 3_000))
    assert growth < 8 * 2**20, f"{growth / 2**20:.1f} MiB kept"  # (unbounded: some 40 MiB)


def test_short_lived_classes_are_freed_and_their_memory_too() -> None:
    # Regression: caches keyed by type kept every class ever flattened alive.
    refs: list[weakref.ref[type]] = []

    def step(i: int) -> None:
        point = namedtuple(f"Point{i}", ["x", "y"])  # type: ignore[misc]
        pair = make_dataclass(f"Pair{i}", [("a", Any), ("b", Any)], frozen=True)
        tree = [pair(point(1.0, 2.0), {"k": 3.0}), point(4.0, pair(5.0, 6.0))]
        leaves, td = fg.tree_flatten(tree)
        assert fg.tree_flatten(fg.tree_unflatten(td, leaves))[0] == leaves == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        fg.tree_map(lambda x: x, tree)
        refs.extend((weakref.ref(point), weakref.ref(pair)))

    growth = traced_growth(step, range(50), range(50, 650))
    assert not any(r() is not None for r in refs), "classes kept alive"
    assert growth < 2**20, f"{growth / 2**20:.1f} MiB kept"


def test_compiled_code_caches_are_bounded_in_leaves_and_let_classes_go() -> None:
    # Regression: up to 256 structures of up to 20,000 leaves each (and
    # their compiled code), with no bound on their size.
    refs = []
    for i in range(320):
        cls = make_dataclass(f"Big{i}", [("w", Any)], frozen=True)
        tree = [cls(tuple(float(j) for j in range(5_000)))]
        for _ in range(3):
            leaves, td = fg.tree_flatten(tree)
            fg.tree_unflatten(td, leaves)
        refs.append(weakref.ref(cls))
        del cls, tree, td
        held = sum(e[0].num_leaves for es in treegen._by_type.entries.values() for e in es)
        assert held <= treegen.MAX_CACHED_LEAVES
        assert sum(e[0].num_leaves for e in treegen._builders.values()) <= treegen.MAX_CACHED_LEAVES
    gc.collect()
    assert refs[0]() is None
    assert sum(r() is not None for r in refs) <= treegen.MAX_CACHED_LEAVES // 5_000


def test_a_structure_that_will_not_compile_is_not_retried_on_every_call() -> None:
    # Regression: a float tree with an int dict key was compiled again on
    # every flatten (and refused each time).
    tree = {i: float(i) for i in range(20)}
    calls = []
    real = treegen.flattener

    def counting(td: TreeDef) -> Any:
        calls.append(td)
        return real(td)

    treegen.flattener = counting  # type: ignore[assignment]
    try:
        for _ in range(10):
            assert fg.tree_leaves(tree) == [float(i) for i in range(20)]
    finally:
        treegen.flattener = real
    assert len(calls) == 1


def test_long_runs_of_leaves_work_and_compare_with_plain_treedefs() -> None:
    # A run of leaves is marked by its type, so a run longer than any
    # cache still takes the fast paths, and a TreeDef made by hand with a
    # plain tuple of leaves is the same structure.
    for n in (3, 300, 30_000):
        leaves, td = fg.tree_flatten([float(i) for i in range(n)])
        by_hand = TreeDef("list", list, None, (LEAF,) * n, n)
        assert td == by_hand and hash(td) == hash(by_hand) and treedef_key(td) == treedef_key(by_hand)
        assert fg.tree_unflatten(by_hand, leaves) == fg.tree_unflatten(td, leaves) == leaves
        assert repr(td) == repr(by_hand)


# Depth -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    inner: Any
    tag: str = fg.static_field(default="box")


Node = namedtuple("Node", ["inner", "bias"])


def wrap(level: int, inner: Any) -> Any:
    """One level of a deep tree; every container kind in turn."""
    return [
        lambda t: [t, 1.0],
        lambda t: {"in": t, "b": 2.0},
        lambda t: (t,),
        lambda t: Box(t),
        lambda t: Node(t, 3.0),
        lambda t: pmap({"in": t}),
        lambda t: pvector([t, None]),
        lambda t: OrderedDict([("z", 4.0), ("in", t)]),
    ][level % 8](inner)


def unwrap(level: int, t: Any, persistent: bool) -> Any:
    """The inner tree of one level, checking the level's container type."""
    kinds: list[tuple[type, Any]] = [
        (PVector if persistent else list, lambda t: t[0]),
        (PMap if persistent else dict, lambda t: t["in"]),
        (tuple, lambda t: t[0]),
        (Box, lambda t: t.inner),
        (Node, lambda t: t.inner),
        (PMap, lambda t: t["in"]),
        (PVector, lambda t: t[0]),
        (PMap if persistent else OrderedDict, lambda t: t["in"]),
    ]
    cls, get = kinds[level % 8]
    assert isinstance(t, cls), (level, type(t))
    return get(t)


def deep_tree(depth: int) -> Any:
    t: Any = [0.5, 0.25]
    for level in reversed(range(depth)):
        t = wrap(level, t)
    return t


def check_deep(t: Any, depth: int, persistent: bool = False, bottom: tuple[float, ...] = (0.5, 0.25)) -> None:
    """The tree :func:`deep_tree` made (or its persistent twin), by a loop: == would recurse."""
    for level in range(depth):
        t = unwrap(level, t, persistent)
    assert tuple(t) == bottom


@pytest.fixture(scope="module")
def deep() -> tuple[Any, list[Any], TreeDef]:
    tree = deep_tree(DEPTH)
    leaves, td = fg.tree_flatten(tree)
    return tree, leaves, td


def test_flatten_and_unflatten_any_depth(deep: tuple[Any, list[Any], TreeDef]) -> None:
    # Regression: RecursionError from 1,000 levels on.
    tree, leaves, td = deep
    per_level = [1.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 4.0]
    want = [per_level[level % 8] for level in range(DEPTH) if per_level[level % 8]]
    assert len(leaves) == td.num_leaves == len(want) + 2
    assert sorted(leaves) == sorted([*want, 0.5, 0.25])
    check_deep(fg.tree_unflatten(td, leaves), DEPTH)
    check_deep(unflatten_persistent(td, leaves), DEPTH, persistent=True)
    assert fg.tree_leaves(tree) == leaves
    assert treedef_equal(fg.tree_structure(tree), td)
    doubled = fg.tree_map(lambda x: 2 * x, tree)
    check_deep(doubled, DEPTH, persistent=True, bottom=(1.0, 0.5))
    assert fg.tree_leaves(doubled) == [2 * x for x in leaves]


def test_flatten_at_depth_gives_the_treedef_of_the_shallow_walk() -> None:
    # The deep walk hands over from the recursive one: both must build the
    # very same structures (leaf runs included).
    tree = deep_tree(40)
    leaves: list[Any] = []
    fast = tree_module._flatten(tree, leaves)
    deep_leaves: list[Any] = []
    slow = tree_module._flatten_deep(tree, deep_leaves)
    assert fast == slow and deep_leaves == leaves and treedef_key(fast) == treedef_key(slow)
    assert repr(fast) == repr(slow)


def test_queries_on_deep_structures(deep: tuple[Any, list[Any], TreeDef]) -> None:
    tree, leaves, td = deep
    paths = tree_paths(td)
    assert len(paths) == len(leaves)
    assert paths[0] == "[0]['b']" and paths[-1] == "[1]"
    assert max(paths, key=len).startswith("[0]['in'][0].inner.inner['in'][0]['in'][0]['in'][0].inner")
    text = repr(td)
    assert text.startswith("list(dict(*, tuple(Box(Node(PMap(PVector(OrderedDict(list(")
    assert text.endswith("), *)")
    assert text.count("(") == text.count(")") == DEPTH + 1 + DEPTH // 8  # (+ a None per PVector level)
    assert structure_mismatch(td, fg.tree_structure(tree)) is None
    assert treedef_equal(td, fg.tree_structure(deep_tree(DEPTH)))
    key = treedef_key(td)
    assert key == treedef_key(fg.tree_structure(deep_tree(DEPTH))) and hash(key) == hash(key)


def test_a_difference_at_the_bottom_of_a_deep_structure_is_found_and_placed() -> None:
    a, b = deep_tree(DEPTH), deep_tree(DEPTH)
    t = b
    for level in range(DEPTH):
        t = unwrap(level, t, False)
    t.append(0.125)  # (only b's bottom list grows)
    ta, tb = fg.tree_structure(a), fg.tree_structure(b)
    assert not treedef_equal(ta, tb) and treedef_key(ta) != treedef_key(tb)
    where = structure_mismatch(ta, tb)
    assert where is not None and where.endswith("list of length 2 vs list of length 3")
    with pytest.raises(ValueError, match="list of length 2 vs list of length 3"):
        fg.tree_map(lambda x, y: x, a, b)


def test_grad_through_a_tree_500_deep() -> None:
    # Regression: grad failed with a bare RecursionError.
    tree = deep_tree(500)

    def loss(t: Any) -> Any:
        return fg.sum([x * x for x in fg.tree_leaves(t)])

    grads = fg.grad(loss)(tree)
    check_deep(grads, 500, persistent=True, bottom=(1.0, 0.5))
    assert fg.tree_leaves(grads) == [2 * x for x in fg.tree_leaves(tree)]


def test_compiled_walks_refuse_structures_deeper_than_their_bound() -> None:
    shallow, too_deep = deep_tree(treegen.MAX_DEPTH // 2), deep_tree(treegen.MAX_DEPTH + 50)
    for tree in (shallow, too_deep):
        tree = [tree, [float(i) for i in range(treegen.MIN_LEAVES)]]
        leaves, td = fg.tree_flatten(tree)
        compiled = treegen.unflattener(td) is not None
        assert compiled is (tree[0] is shallow)
        for _ in range(3):  # compiled (or refused) on the second meeting
            assert fg.tree_flatten(tree)[0] == leaves
            assert fg.tree_leaves(fg.tree_unflatten(td, leaves)) == leaves


# Trees that contain themselves ------------------------------------------------------------


@dataclass
class Mutable:
    child: Any


def cyclic_trees() -> list[tuple[Any, str]]:
    a: list[Any] = []
    a.append(a)
    d: dict[str, Any] = {"x": 1.0}
    d["self"] = d
    deep: list[Any] = [1.0, {"k": (2.0, [])}]
    deep[1]["k"][1].append(deep)
    m = Mutable(None)
    m.child = [1.0, m]
    inner: list[Any] = [1.0]
    outer = {"a": [inner, {"b": inner}]}
    inner.append(outer["a"])
    return [
        (a, r"the list at \[0\] is the one at the root"),
        (d, r"the dict at \['self'\] is the one at the root"),
        (deep, r"the list at \[1\]\['k'\]\[1\]\[0\] is the one at the root"),
        (m, r"the Mutable at \.child\[1\] is the one at the root"),
        (outer, r"the list at \['a'\]\[0\]\[1\] is the one at \['a'\]"),
    ]


@pytest.mark.parametrize("tree, where", cyclic_trees())
def test_a_tree_that_contains_itself_is_refused_with_its_path(tree: Any, where: str) -> None:
    # Regression: a bare RecursionError.
    for call in (fg.tree_flatten, fg.tree_leaves, lambda t: fg.tree_map(lambda x: x, t)):
        with pytest.raises(ValueError, match="pytrees must not contain themselves") as info:
            call(tree)
        assert info.match(where)
    with pytest.raises(ValueError, match="contain themselves"):
        fg.grad(lambda t: 1.0)(tree)


def test_shared_subtrees_are_not_cycles() -> None:
    shared = [1.0, 2.0]
    tree = {"a": shared, "b": [shared, (shared,)]}
    assert fg.tree_leaves(tree) == [1.0, 2.0] * 3


def test_a_structure_mismatch_deep_in_a_tree_gives_a_short_path() -> None:
    a: Any = 1.0
    b: Any = [1.0]
    for _ in range(5000):
        a, b = [a], [b]
    with pytest.raises(ValueError, match=r"does not match") as info:
        fg.tree_map(lambda x, y: x, a, b)
    assert len(str(info.value)) < 400 and "..." in str(info.value)
