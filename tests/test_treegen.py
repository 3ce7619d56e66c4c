"""Compiled flatten/unflatten for one structure (jit's per-call path) agree
with the general tree walk, and refuse every tree of another structure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from pyrsistent import pmap, pvector
from test_tree import EXAMPLES, same, trees

import fgrad as fg
from fgrad import treegen
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
    tree = {"x\nimport os": 1.0, "') or True or ('": pvector([2.0]), 3: pmap({"\\": 4.0})}
    check(tree)


def test_very_large_structures_keep_the_general_walk() -> None:
    td = fg.tree_structure([float(i) for i in range(treegen.MAX_LEAVES + 1)])
    assert treegen.unflattener(td) is None and treegen.flattener(td) is None


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
