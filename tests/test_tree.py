"""Pytrees: flatten / unflatten / tree_map / tree_paths over every container."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict, defaultdict, namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap, pvector

import fgrad as fg
from fgrad.engine.tree import structure_mismatch, tree_paths

Point = namedtuple("Point", ["x", "y"])


@dataclass(frozen=True)
class Pair:
    left: Any
    right: Any


@dataclass(frozen=True)
class Layer:
    w: Any
    b: Any
    activation: str = fg.static_field(default="relu")
    size: int = fg.static_field(default=1)


@dataclass(frozen=True)
class Checked:
    """A dataclass whose __post_init__ rejects anything but floats."""

    w: Any

    def __post_init__(self) -> None:
        if type(self.w) is not float:
            raise TypeError("w must be a float")


# Helpers ---------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Structural equality that also insists on identical container types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, PMap)):
        return set(a.keys()) == set(b.keys()) and all(same(a[k], b[k]) for k in a.keys())
    if isinstance(a, (list, tuple, PVector)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a is b or a == b


def persistent(t: Any) -> Any:
    """What fgrad should produce for ``t``: dicts -> PMap, lists -> PVector."""
    if isinstance(t, (dict, PMap)):
        return pmap({k: persistent(v) for k, v in t.items()})
    if isinstance(t, (list, PVector)):
        return pvector([persistent(v) for v in t])
    if isinstance(t, tuple) and hasattr(type(t), "_fields"):
        return type(t)(*[persistent(v) for v in t])
    if isinstance(t, tuple):
        return tuple(persistent(v) for v in t)
    if dataclasses.is_dataclass(t):
        return dataclasses.replace(
            t,
            **{
                f.name: persistent(getattr(t, f.name))
                for f in dataclasses.fields(t)
                if not f.metadata.get("static")
            },
        )
    return t


# A recursive strategy over every container kind -------------------------------

leaf_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-1000, max_value=1000),
)
keys = st.text(alphabet="abcwxyz", min_size=1, max_size=3)


def _containers(children: Any) -> Any:
    few = st.lists(children, max_size=3)
    return st.one_of(
        few,
        few.map(tuple),
        few.map(pvector),
        st.dictionaries(keys, children, max_size=3),
        st.dictionaries(keys, children, max_size=3).map(pmap),
        st.builds(Point, children, children),
        st.builds(Pair, children, children),
        st.builds(Layer, children, children, st.sampled_from(["relu", "tanh"]), st.integers(1, 4)),
    )


trees = st.recursive(st.one_of(st.none(), leaf_values), _containers, max_leaves=12)


# Round trips -------------------------------------------------------------------

EXAMPLES = [
    None,
    1.5,
    (),
    [],
    {},
    pmap(),
    pvector(),
    (1.0, None, 2.0),
    Point(1.0, [2.0, 3.0]),
    [1.0, [2.0, (3.0,)]],
    {"b": 1.0, "a": (2.0, 3.0)},
    pmap({"z": 1.0, "a": {"q": 2.0}}),
    pvector([1.0, {"x": 2.0}, None]),
    Layer(w=pvector([1.0, 2.0]), b=0.5, activation="tanh", size=2),
    Pair(Layer(1.0, 2.0), Pair(None, Point(3.0, 4.0))),
    {"layers": [Layer(pvector([1.0]), 0.0), Layer(pvector([2.0, 3.0]), 1.0, size=2)], "lr": 0.1},
]


@pytest.mark.parametrize("tree", EXAMPLES, ids=repr)
def test_flatten_unflatten_round_trip_keeps_container_types(tree: Any) -> None:
    leaves, td = fg.tree_flatten(tree)
    rebuilt = fg.tree_unflatten(td, leaves)
    assert same(rebuilt, tree)
    assert td.num_leaves == len(leaves)
    assert fg.tree_leaves(rebuilt) == leaves


@given(trees)
def test_round_trip_property(tree: Any) -> None:
    leaves, td = fg.tree_flatten(tree)
    rebuilt = fg.tree_unflatten(td, leaves)
    assert same(rebuilt, tree)
    again_leaves, again_td = fg.tree_flatten(rebuilt)
    assert again_td == td
    assert len(again_leaves) == len(leaves)
    assert all(a is b for a, b in zip(again_leaves, leaves, strict=True))
    assert len(tree_paths(td)) == td.num_leaves == len(leaves)


@given(trees)
def test_unflatten_with_new_leaves_places_them_in_flatten_order(tree: Any) -> None:
    leaves, td = fg.tree_flatten(tree)
    new = [float(i) for i in range(len(leaves))]
    rebuilt = fg.tree_unflatten(td, new)
    assert fg.tree_leaves(rebuilt) == new
    assert fg.tree_structure(rebuilt) == td


@given(trees)
def test_tree_map_identity_gives_the_persistent_tree(tree: Any) -> None:
    out = fg.tree_map(lambda x: x, tree)
    assert same(out, persistent(tree))


@given(trees)
def test_flatten_and_tree_map_do_not_mutate_their_input(tree: Any) -> None:
    before = copy.deepcopy(tree)
    fg.tree_flatten(tree)
    fg.tree_map(lambda x, y: 2 * x + y, tree, tree)
    assert same(tree, before)


def test_dict_subclasses_round_trip() -> None:
    ordered = OrderedDict([("b", 1.0), ("a", 2.0)])
    leaves, td = fg.tree_flatten(ordered)
    assert leaves == [2.0, 1.0]
    rebuilt = fg.tree_unflatten(td, leaves)
    assert type(rebuilt) is OrderedDict and dict(rebuilt) == dict(ordered)

    counts = defaultdict(list, {"a": 1.0, "b": 2.0})
    leaves, td = fg.tree_flatten(counts)
    assert leaves == [1.0, 2.0]
    rebuilt = fg.tree_unflatten(td, leaves)
    assert type(rebuilt) is defaultdict and rebuilt.default_factory is list
    assert dict(rebuilt) == {"a": 1.0, "b": 2.0}


def test_grad_over_a_defaultdict_gives_a_pmap() -> None:
    grads = fg.grad(lambda d: d["a"] * d["b"])(defaultdict(float, {"a": 2.0, "b": 3.0}))
    assert isinstance(grads, PMap) and dict(grads) == {"a": 3.0, "b": 2.0}


def test_none_is_an_empty_container_not_a_leaf() -> None:
    assert fg.tree_leaves(None) == []
    assert fg.tree_leaves([None, (None,), {"a": None}]) == []
    assert fg.tree_unflatten(fg.tree_structure([None, 1.0]), [7.0]) == [None, 7.0]


def test_everything_else_is_a_leaf() -> None:
    things = ["text", 3, 2.5, True, 1j, object()]
    assert fg.tree_leaves(things) == things


def test_dataclass_static_fields_are_structure_not_leaves() -> None:
    layer = Layer(w=pvector([1.0, 2.0]), b=0.5, activation="tanh", size=2)
    leaves, td = fg.tree_flatten(layer)
    assert leaves == [1.0, 2.0, 0.5]
    rebuilt = fg.tree_unflatten(td, [10.0, 20.0, 30.0])
    assert type(rebuilt) is Layer
    assert rebuilt.activation == "tanh" and rebuilt.size == 2
    assert list(rebuilt.w) == [10.0, 20.0] and rebuilt.b == 30.0
    other = Layer(w=pvector([1.0, 2.0]), b=0.5, activation="relu", size=2)
    assert fg.tree_structure(other) != td


def test_dataclass_fields_flatten_in_declaration_order() -> None:
    assert fg.tree_leaves(Pair(left=2.0, right=1.0)) == [2.0, 1.0]
    assert tree_paths(fg.tree_structure(Pair(1.0, [2.0]))) == [".left", ".right[0]"]


def test_unflatten_skips_post_init_so_trees_of_other_values_fit_a_validated_class() -> None:
    out = fg.tree_map(lambda w: "not a float", Checked(1.0))
    assert type(out) is Checked and out.w == "not a float"


def test_dict_keys_flatten_sorted_whatever_the_insertion_order() -> None:
    assert fg.tree_leaves({"b": 2.0, "c": 3.0, "a": 1.0}) == [1.0, 2.0, 3.0]
    assert fg.tree_leaves(pmap({"b": 2.0, "c": 3.0, "a": 1.0})) == [1.0, 2.0, 3.0]


@given(st.dictionaries(keys, st.floats(allow_nan=False), min_size=1, max_size=8), st.randoms())
def test_dict_and_pmap_flatten_in_sorted_key_order(d: dict[str, float], rnd: Any) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    expected = [d[k] for k in sorted(d)]
    assert fg.tree_leaves(shuffled) == expected
    assert fg.tree_leaves(pmap(shuffled)) == expected
    # Rebuilt in its own order (a function iterating it sees what it sees on
    # floats), a dict's order is part of its structure; trees still match.
    assert structure_mismatch(fg.tree_structure(shuffled), fg.tree_structure(d)) is None
    rebuilt = fg.tree_unflatten(fg.tree_structure(shuffled), expected)
    assert list(rebuilt.items()) == list(shuffled.items())


def test_mixed_key_types_flatten_deterministically() -> None:
    a = fg.tree_leaves({1: 1.0, "a": 2.0})
    b = fg.tree_leaves({"a": 2.0, 1: 1.0})
    assert a == b and sorted(a) == [1.0, 2.0]


def test_treedefs_are_hashable_and_compare_by_structure() -> None:
    a = fg.tree_structure({"w": [1.0, 2.0], "b": 0.0})
    b = fg.tree_structure({"w": [3.0, 4.0], "b": 5.0})
    c = fg.tree_structure({"w": [3.0], "b": 5.0})
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    # A dict in another insertion order is another structure (it is rebuilt
    # in its own order), one that matches in tree_map.
    other_order = fg.tree_structure({"b": 5.0, "w": [3.0, 4.0]})
    assert other_order != a and structure_mismatch(a, other_order) is None


def test_unflatten_with_the_wrong_number_of_leaves_raises() -> None:
    td = fg.tree_structure([1.0, 2.0])
    with pytest.raises(ValueError, match="2 leaves but 3"):
        fg.tree_unflatten(td, [1.0, 2.0, 3.0])


# tree_map ----------------------------------------------------------------------


def test_tree_map_over_dict_and_pmap_of_same_keys_returns_a_pmap() -> None:
    out = fg.tree_map(lambda p, g: p - 0.5 * g, {"a": 1.0, "b": 2.0}, pmap({"a": 2.0, "b": 4.0}))
    assert type(out) is type(pmap())
    assert dict(out) == {"a": 0.0, "b": 0.0}
    out = fg.tree_map(lambda p, g: p + g, pmap({"a": 1.0}), {"a": 2.0})
    assert isinstance(out, PMap) and out["a"] == 3.0


def test_tree_map_over_list_and_pvector_of_same_length_returns_a_pvector() -> None:
    out = fg.tree_map(lambda p, g: p + g, [1.0, 2.0], pvector([10.0, 20.0]))
    assert isinstance(out, PVector) and list(out) == [11.0, 22.0]
    out = fg.tree_map(lambda p, g: p + g, pvector([1.0]), [10.0])
    assert isinstance(out, PVector) and list(out) == [11.0]


def test_tree_map_results_are_persistent_all_the_way_down() -> None:
    params = {"layers": [{"w": [1.0, 2.0], "b": 0.0}], "scale": (1.0, Point(2.0, 3.0))}
    out = fg.tree_map(lambda x: x * 2, params)
    assert isinstance(out, PMap)
    assert isinstance(out["layers"], PVector)
    assert isinstance(out["layers"][0], PMap)
    assert isinstance(out["layers"][0]["w"], PVector)
    assert type(out["scale"]) is tuple and type(out["scale"][1]) is Point
    assert list(out["layers"][0]["w"]) == [2.0, 4.0] and out["scale"][1].y == 6.0


def test_tree_map_keeps_dataclasses_with_their_static_fields() -> None:
    layer = Layer(w=[1.0, 2.0], b=0.5, activation="tanh", size=2)
    out = fg.tree_map(lambda a, b: a + b, layer, layer)
    assert type(out) is Layer and out.activation == "tanh" and out.size == 2
    assert isinstance(out.w, PVector) and list(out.w) == [2.0, 4.0] and out.b == 1.0


def test_tree_map_calls_f_with_matching_leaves_of_every_tree() -> None:
    calls = []
    fg.tree_map(
        lambda *xs: calls.append(xs), {"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}, {"b": 6.0, "a": 5.0}
    )
    assert calls == [(1.0, 3.0, 5.0), (2.0, 4.0, 6.0)]


@pytest.mark.parametrize(
    "a, b, where",
    [
        ({"a": 1.0}, {"b": 1.0}, "root"),
        ({"a": [1.0, 2.0]}, {"a": [1.0]}, r"\['a'\]"),
        ({"a": {"x": 1.0}}, {"a": {"x": (1.0,)}}, r"\['a'\]\['x'\]"),
        ([1.0, Point(1.0, 2.0)], [1.0, Point(1.0, [2.0])], r"\[1\]\.y"),
        ((1.0, 2.0), [1.0, 2.0], "root"),
        (Pair(1.0, [1.0]), Pair(1.0, [1.0, 2.0]), r"\.right"),
    ],
)
def test_tree_map_structure_mismatch_raises_value_error_naming_the_path(a: Any, b: Any, where: str) -> None:
    with pytest.raises(ValueError, match=where):
        fg.tree_map(lambda x, y: x, a, b)


def test_tree_map_mismatch_in_static_fields_raises() -> None:
    with pytest.raises(ValueError, match="Layer"):
        fg.tree_map(lambda x, y: x, Layer(1.0, 2.0, "relu"), Layer(1.0, 2.0, "tanh"))


@given(trees, st.floats(-10, 10))
def test_tree_map_over_two_trees_of_one_structure_combines_leaf_by_leaf(tree: Any, c: float) -> None:
    leaves, td = fg.tree_flatten(tree)
    numbers = [float(i) for i in range(len(leaves))]
    other = fg.tree_unflatten(td, numbers)
    out = fg.tree_map(lambda x, y: y * c, tree, other)
    assert fg.tree_leaves(out) == [n * c for n in numbers]


# tree_paths --------------------------------------------------------------------


def test_tree_paths_name_every_leaf_in_flatten_order() -> None:
    tree = {"w": [1.0, 2.0], "b": 0.0, "p": Point(3.0, (4.0,)), "l": Layer(5.0, 6.0)}
    assert tree_paths(fg.tree_structure(tree)) == [
        "['b']",
        "['l'].w",
        "['l'].b",
        "['p'].x",
        "['p'].y[0]",
        "['w'][0]",
        "['w'][1]",
    ]


def test_tree_paths_of_a_bare_leaf_is_the_empty_path() -> None:
    assert tree_paths(fg.tree_structure(1.0)) == [""]
    assert tree_paths(fg.tree_structure(None)) == []


# Nodes are leaves ----------------------------------------------------------------


def test_expression_nodes_are_leaves() -> None:
    out = fg.trace(lambda x: {"a": x * 2.0, "b": [x]})(1.0)
    leaves = fg.tree_leaves(out)
    assert len(leaves) == 2 and all(isinstance(leaf, fg.Expr) for leaf in leaves)
