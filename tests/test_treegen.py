"""Compiled flatten/unflatten for one structure (jit's per-call path) agree
with the general tree walk, and refuse every tree of another structure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from pyrsistent import pmap, pvector
from test_tree import EXAMPLES, same, trees

import fgrad as fg
from fgrad.compilers import treegen
from fgrad.engine.tree import static_field
from fgrad.nn import MLP


def floats_only(tree: Any) -> Any:
    leaves, td = fg.tree_flatten(tree)
    return fg.tree_unflatten(td, [float(x) for x in leaves])


def check(tree: Any) -> None:
    tree = floats_only(tree)
    leaves, td = fg.tree_flatten(tree)
    build, flatten = treegen.unflattener(td), treegen.flattener(td)
    assert build is not None and flatten is not None
    rebuilt = build(tuple(leaves))
    assert same(rebuilt, fg.tree_unflatten(td, leaves))
    assert flatten(tree) == leaves
    assert flatten(rebuilt) == leaves


@pytest.mark.parametrize("tree", EXAMPLES, ids=repr)
def test_examples(tree: Any) -> None:
    check(tree)


@given(trees)
def test_random_trees(tree: Any) -> None:
    check(tree)


def test_another_structure_is_refused() -> None:
    model = MLP.init([2, 3, 1], seed=0)
    td = fg.tree_structure((model, {"a": 1.0, "b": [2.0, None]}))
    flatten = treegen.flattener(td)
    assert flatten is not None
    assert flatten((model, {"a": 1.0, "b": [2.0, None]})) is not None
    for other in [
        (model, {"a": 1.0, "c": [2.0, None]}),  # another key
        (model, {"a": 1.0, "b": [2, None]}),  # an int leaf: the general path converts it
        (model, {"a": 1.0, "b": [2.0, 3.0]}),  # a leaf where None was
        (model, {"a": 1.0, "b": [2.0, None, 3.0]}),  # longer
        (model, {"a": [1.0], "b": [2.0, None]}),  # a container where a leaf was
        (model.with_style("binary"), {"a": 1.0, "b": [2.0, None]}),  # another static value
        (MLP.init([2, 4, 1], seed=0), {"a": 1.0, "b": [2.0, None]}),  # another size
        ({"a": 1.0, "b": [2.0, None]}, model),
        [model, {"a": 1.0, "b": [2.0, None]}],
    ]:
        assert flatten(other) is None, other


def test_hostile_keys_stay_out_of_the_source() -> None:
    tree = {"x\nimport os": 1.0, "') or True or ('": pvector([2.0]), "3": pmap({"\\": 4.0})}
    check(tree)
    # Keys other than strings (1 == 1.0 == True) are left to the general walk.
    assert treegen.flattener(fg.tree_structure({3: 1.0, "a": 2.0})) is None
    assert treegen.unflattener(fg.tree_structure({3: 1.0, "a": 2.0})) is not None


def test_very_large_structures_keep_the_general_walk() -> None:
    td = fg.tree_structure([float(i) for i in range(treegen.MAX_LEAVES + 1)])
    assert treegen.unflattener(td) is None and treegen.flattener(td) is None


def test_structures_are_compiled_only_when_their_walks_are_short() -> None:
    # A walk's source grows with its items (containers, children that are not
    # a run of leaves, static fields), not its leaves: 100,000 one-key dicts
    # took 13 s and 2.7 GB to compile, 3,999 dataclasses of 75 fields 4.6 s.
    import dataclasses

    from fgrad.compilers.treegen import source

    k = source.MAX_ITEMS // 3  # one-key dicts: three items each (itself, its leaf, its place in the list)
    assert treegen.flattener(fg.tree_structure([{"x": 0.5} for _ in range(k - 1)])) is not None
    many = fg.tree_structure([{"x": 0.5} for _ in range(k + 1)])
    assert treegen.flattener(many) is None and treegen.unflattener(many) is None
    wide = dataclasses.make_dataclass("Wide", [(f"f{i}", float) for i in range(75)], frozen=True)
    fields = fg.tree_structure([wide(*[0.5] * 75) for _ in range(source.MAX_ITEMS // 76 + 1)])
    assert treegen.unflattener(fields) is None and treegen.flattener(fields) is None
    vectors = fg.tree_structure([[0.5] * 1000 for _ in range(250)])  # 250,000 leaves in runs
    assert treegen.flattener(vectors) is not None and treegen.unflattener(vectors) is not None
    leaves = fg.tree_leaves([[0.5 + i] * 1000 for i in range(250)])
    assert treegen.unflattener(vectors)(leaves) == fg.tree_unflatten(vectors, leaves)


def test_jit_serves_changing_structures_and_static_values() -> None:
    calls = []

    def f(tree: Any, scale: tuple[float, ...]) -> Any:
        calls.append(1)
        return fg.tree_map(lambda x: x * scale[0], tree)

    g = fg.jit(f, static_argnums=1)
    data = (2.0, 3.0)
    assert g({"a": 1.0}, data) == pmap({"a": 2.0})
    assert g({"a": 5.0}, data) == pmap({"a": 10.0})  # compiled flatten, the same key object
    assert g({"a": 5.0}, (2.0, 3.0)) == pmap({"a": 10.0})  # an equal static object: a hit
    assert g({"a": 1.0, "b": 2.0}, data) == pmap({"a": 2.0, "b": 4.0})  # another structure
    assert g({"a": 1}, data) == pmap({"a": 2.0})  # an int leaf: the general path
    assert g({"a": 1.0}, (3.0,)) == pmap({"a": 3.0})  # another static value
    assert g({"a": 1.0}, data) == pmap({"a": 2.0})
    info = g.cache_info()
    assert (info.traces, info.misses, info.hits) == (3, 3, 4)
    assert len(calls) == 3


def generic(tree: Any) -> tuple[list[Any], Any]:
    from fgrad.engine.tree import walk as tree_module

    leaves: list[Any] = []
    return leaves, tree_module._flatten(tree, leaves)


@given(trees)
def test_tree_flatten_and_unflatten_agree_once_compiled(tree: Any) -> None:
    # Big enough to be compiled on the second meeting; met three times.
    big = (tree, [float(i) for i in range(treegen.MIN_LEAVES)], {"k": floats_only(tree)})
    want_leaves, want_td = generic(big)
    for _ in range(3):
        leaves, td = fg.tree_flatten(big)
        assert leaves == want_leaves and td == want_td
        assert same(fg.tree_unflatten(td, leaves), fg.tree_unflatten(want_td, want_leaves))
        rebuilt = fg.tree_unflatten(want_td, [x * 2 for x in leaves])
        assert fg.tree_flatten(rebuilt)[0] == [x * 2 for x in leaves]
        from fgrad.engine.tree.build import _build, unflatten_persistent

        assert same(unflatten_persistent(want_td, leaves), _build(want_td, iter(leaves), True))


def test_the_cache_follows_a_changing_structure() -> None:
    a = {"w": [float(i) for i in range(20)], "b": 1.0}
    b = {"w": [float(i) for i in range(21)], "b": 1.0}
    c = {"w": [float(i) for i in range(20)], "c": 1.0}
    d = {"w": [float(i) for i in range(20)], "b": 1}  # an int leaf
    from fgrad.compilers import treegen as cache

    for other in (b, c, d):
        for _ in range(3):
            assert fg.tree_flatten(a) == generic(a)
        assert any(e[2] is not None and e[0] == generic(a)[1] for e in cache._by_type.entries[dict])
        assert fg.tree_flatten(other) == generic(other)  # refused by it


# Regressions found by review ---------------------------------------------------


@dataclass(frozen=True)
class Flagged:
    w: tuple[float, ...]
    flag: Any = static_field(default=False)


def test_static_values_equal_but_not_identical_are_not_confused() -> None:
    w = tuple(float(i) for i in range(16))

    def loss(m: Flagged) -> Any:
        return fg.sum([x * x for x in m.w]) * (7.0 if m.flag is True else 1.0)

    for _ in range(3):
        assert fg.grad(loss)(Flagged(w, 1)).w[1] == 2.0
    got = fg.grad(loss)(Flagged(w, True))
    assert got.w[1] == 14.0 and got.flag is True
    for flag in (0.0, -0.0):
        leaves, td = fg.tree_flatten(Flagged(w, flag))
        assert math.copysign(1.0, td.meta[2][0]) == math.copysign(1.0, flag)


class Positive:
    """A data descriptor: the field is stored elsewhere, as its absolute value."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_" + name

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        return 0.0 if obj is None else getattr(obj, self.name)

    def __set__(self, obj: Any, value: float) -> None:
        object.__setattr__(obj, self.name, abs(value))


@dataclass
class WithDescriptor:
    a: float = Positive()  # type: ignore[assignment]
    b: tuple[float, ...] = ()


def test_dataclass_fields_that_are_descriptors_are_set_through_them() -> None:
    m = WithDescriptor(-1.0, tuple(float(i) for i in range(16)))
    leaves, td = fg.tree_flatten(m)
    for _ in range(3):
        assert fg.tree_unflatten(td, leaves).a == 1.0


def test_deep_structures_rebuild_at_any_depth() -> None:
    deep: Any = [float(i) for i in range(16)]
    for _ in range(300):
        deep = [deep, 1.0]
    leaves, td = fg.tree_flatten(deep)
    for _ in range(3):
        assert fg.tree_flatten(fg.tree_unflatten(td, leaves)) == (leaves, td)


def test_unhashable_static_values_keep_working() -> None:
    np = pytest.importorskip("numpy")

    @dataclass(frozen=True)
    class Scaled:
        w: tuple[float, ...]
        scale: Any = static_field(default=None)

    m = Scaled(tuple(float(i) for i in range(16)), np.array([2.0, 3.0]))
    for _ in range(3):
        assert fg.grad(lambda m: fg.sum(m.w) * float(m.scale[0]))(m).w[0] == 2.0


def test_two_structures_of_one_type_in_turn_are_both_compiled() -> None:
    a = MLP.init([2, 8, 1], seed=0)
    b = MLP.init([2, 4, 4, 1], seed=1)
    for _ in range(3):
        for m in (a, b):
            assert fg.tree_flatten(m) == generic(m)
    entries = treegen._by_type.entries[MLP]
    assert sum(e[2] is not None for e in entries) >= 2


def test_an_equal_structure_with_other_static_objects_is_compiled_too() -> None:
    # Regression: it matched the entry whose compiled flattener refused it, so
    # it took the general walk forever.
    a = MLP.init([2, 8, 1], seed=0).with_style("".join(["fu", "sed"]))
    b = a.with_style("".join(["fus", "ed"]))
    assert a.style == b.style and a.style is not b.style
    for m in (a, a, a, b, b, b):
        assert fg.tree_flatten(m) == generic(m)
    flatteners = [e[2] for e in treegen._by_type.entries[MLP] if e[2] is not None]
    assert any(f(b) is not None for f in flatteners)


def test_the_compiled_flattener_hands_back_its_own_treedef() -> None:
    # Regression: met as 0.0, -0.0, -0.0, the third gave the first TreeDef.
    w = tuple(float(i) for i in range(20))

    def loss(m: Flagged) -> Any:
        return fg.sum([math.copysign(1.0, m.flag) * x * x for x in m.w])

    got = [fg.grad(loss)(Flagged(w, flag)).w[1] for flag in (0.0, -0.0, -0.0, -0.0)]
    assert got == [2.0, -2.0, -2.0, -2.0]
    for flag in (1, True, True, True):
        td = fg.tree_structure(Flagged(w, flag))
        assert td.meta[2][0] is flag
