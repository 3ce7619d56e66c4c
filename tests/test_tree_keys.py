"""Telling structures apart: dict key order, treedef_equal, treedef_key."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import pmap, pvector

import fgrad as fg
from fgrad.engine.tree import TreeDef, structure_mismatch, treedef_equal, treedef_key
from fgrad.nn import MLP


@dataclass(frozen=True)
class Tagged:
    w: Any
    tag: Any = fg.static_field(default=None)


Point = namedtuple("Point", ["x", "y"])
One = namedtuple("One", ["x"])


@dataclass(frozen=True)
class Scale:
    factor: Any
    name: str


class Tolerant(tuple):  # type: ignore[type-arg]
    """A tuple whose == is its own: equal to any Tolerant of the same length."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tolerant) and len(self) == len(other)

    def __hash__(self) -> int:
        return len(self)


# Key order ---------------------------------------------------------------------------

hashable_keys = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.floats(allow_nan=True, width=16),
        st.text("ab", max_size=2),
        st.binary(max_size=2),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, inner), st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)


@given(st.lists(hashable_keys, min_size=1, max_size=8), st.randoms())
def test_dict_and_pmap_with_the_same_keys_flatten_in_one_order(keys: list[Any], rnd: Any) -> None:
    # Regression: keys that are not totally ordered (frozensets, tuples with
    # None, NaN, mixed types) sorted by insertion or hash order.
    d = {k: float(i) for i, k in enumerate(keys)}
    items = list(d.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    rnd.shuffle(items)
    p = pmap(dict(items))
    orders = [fg.tree_structure(t).meta for t in (d, shuffled, p)]
    # (The very same key objects, so compared by identity: NaN != NaN.)
    assert all(len(o) == len(d) and all(map(lambda a, b: a is b, o, orders[0])) for o in orders)
    assert fg.tree_leaves(d) == fg.tree_leaves(shuffled) == fg.tree_leaves(p)
    out = fg.tree_map(lambda a, b: a + b, d, p)
    got = {id(k): v for k, v in out.items()}  # (a PMap misses NaN keys by [])
    assert len(got) == len(d) and all(got[id(k)] == 2 * v for k, v in d.items())


def test_frozenset_keys_match_between_a_dict_and_a_pmap() -> None:
    # A dict and a PMap with the same frozenset keys: once a false mismatch.
    a, b, c = frozenset({1}), frozenset({2}), frozenset({1, 2})
    for order in ([a, b, c], [c, b, a], [b, c, a]):
        d = {k: float(len(k)) for k in order}
        p = pmap({k: 10.0 for k in reversed(order)})
        assert dict(fg.tree_map(lambda x, y: x + y, d, p)) == {a: 11.0, b: 11.0, c: 12.0}


def test_strings_and_numbers_keep_their_natural_order() -> None:
    assert fg.tree_structure({"b": 1.0, "a": 2.0, "c": 3.0}).meta == ("a", "b", "c")
    assert fg.tree_structure({3: 1.0, -1.5: 2.0, True: 3.0}).meta == (-1.5, True, 3)
    meta = fg.tree_structure({"a": 1.0, 2: 2.0, None: 3.0, (1, None): 4.0, frozenset(): 5.0}).meta
    assert meta == (None, 2, "a", (1, None), frozenset())  # by type, then value


# treedef_equal -----------------------------------------------------------------------


def test_treedef_equal_agrees_with_equality_on_shallow_structures() -> None:
    trees = [{"a": 1.0}, pmap({"a": 1.0}), [1.0], (1.0,), Point(1.0, 2.0), Tagged(1.0, "x"), Tagged(1.0, "y")]
    for a in trees:
        for b in trees:
            ta, tb = fg.tree_structure(a), fg.tree_structure(b)
            assert treedef_equal(ta, tb) is (ta == tb)


def test_treedef_equal_is_false_for_static_values_that_cannot_compare() -> None:
    np = pytest.importorskip("numpy")
    a, b = (fg.tree_structure(Tagged(1.0, np.array([1.0, 2.0]))) for _ in range(2))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(a == b)
    assert treedef_equal(a, a) and not treedef_equal(a, b)
    where = structure_mismatch(a, b)
    assert where is not None and "cannot be compared" in where


# treedef_key -----------------------------------------------------------------------


def key_of(tree: Any) -> Any:
    return treedef_key(fg.tree_structure(tree))


def test_treedef_key_is_equal_for_equal_structures_built_twice() -> None:
    for make in (
        lambda: MLP.init([2, 16, 16, 1], seed=1),
        lambda: {"w": [1.0, 2.0], "b": (3.0, None), "p": Point(1.0, pvector([2.0]))},
        lambda: Tagged({"k": 1.0}, ("relu", 3, 0.5, frozenset({"a", 1}))),
        lambda: OrderedDict([("b", 1.0), ("a", 2.0)]),
    ):
        a, b = fg.tree_structure(make()), fg.tree_structure(make())
        if b is a:  # (a compiled flattener, met in another test, hands back its own TreeDef)
            b = copy.deepcopy(a)
        assert a is not b and a == b
        ka, kb = treedef_key(a), treedef_key(b)
        assert ka == kb and hash(ka) == hash(kb) and len({ka, kb}) == 1


def test_treedef_key_tells_apart_what_equality_confuses() -> None:
    # Static values and dict keys are equal (1 == 1.0 == True, 0.0 == -0.0)
    # but a function may tell them apart: so must the key.
    confused = [
        [Tagged(1.0, 1), Tagged(1.0, 1.0), Tagged(1.0, True)],
        [Tagged(1.0, 0.0), Tagged(1.0, -0.0)],
        [Tagged(1.0, (1, 2)), Tagged(1.0, (1.0, 2)), Tagged(1.0, (True, 2))],
        [Tagged(1.0, frozenset({1})), Tagged(1.0, frozenset({1.0})), Tagged(1.0, frozenset({True}))],
        [Tagged(1.0, frozenset({0.0})), Tagged(1.0, frozenset({-0.0}))],
        [Tagged(1.0, ((0.0,),)), Tagged(1.0, ((-0.0,),))],
        [Tagged(1.0, Point(1, 2)), Tagged(1.0, (1, 2))],
        [Tagged(1.0, 1 + 0j), Tagged(1.0, 1.0), Tagged(1.0, complex(1.0, -0.0))],
        [{1: 1.0}, {1.0: 1.0}, {True: 1.0}],
        [{0.0: 1.0}, {-0.0: 1.0}],
        [{(1, "a"): 1.0}, {(1.0, "a"): 1.0}],
        [{frozenset({1}): 1.0}, {frozenset({1.0}): 1.0}],
        [Tagged(1.0, Decimal("0.0")), Tagged(1.0, Decimal("-0.0")), Tagged(1.0, Decimal("0.00"))],
        [Tagged(1.0, pmap({"a": 1})), Tagged(1.0, pmap({"a": True}))],
        [Tagged(1.0, pvector([0.0])), Tagged(1.0, pvector([-0.0]))],
        [Tagged(1.0, Scale(1, "s")), Tagged(1.0, Scale(1.0, "s"))],
    ]
    different = [  # (container types: unequal TreeDefs too)
        [{"a": 1.0}, pmap({"a": 1.0}), OrderedDict([("a", 1.0)])],
        [[1.0], pvector([1.0]), (1.0,), One(1.0)],
        [OrderedDict([("a", 1.0), ("b", 2.0)]), OrderedDict([("b", 2.0), ("a", 1.0)])],
    ]
    np = pytest.importorskip("numpy")
    confused.append([Tagged(1.0, np.float32(0.0)), Tagged(1.0, np.float32(-0.0))])
    for group in confused + different:
        structures = [fg.tree_structure(t) for t in group]
        assert len(set(structures)) == (1 if group in confused else len(group)), group
        assert len({treedef_key(td) for td in structures}) == len(group), group


def test_treedef_key_leaves_a_tuple_subclass_with_its_own_equality_to_it() -> None:
    a, b = key_of(Tagged(1.0, Tolerant((1, 2)))), key_of(Tagged(1.0, Tolerant((3.0, 4))))
    assert a == b  # (Tolerant says they are equal: the key does not look inside)
    assert a != key_of(Tagged(1.0, (1, 2)))


def test_treedef_key_counts_nans_in_a_frozenset() -> None:
    nan = float("nan")
    one, two = frozenset({nan}), frozenset({nan, float("nan")})
    assert len(one) == 1 and len(two) == 2
    assert key_of(Tagged(1.0, one)) != key_of(Tagged(1.0, two))


def test_treedef_key_of_a_nan_static_value_equals_itself() -> None:
    # NaN != NaN, so equal structures holding two NaN objects are unequal;
    # the key compares the bits.
    a, b = fg.tree_structure(Tagged(1.0, float("nan"))), fg.tree_structure(Tagged(1.0, float("nan")))
    assert a != b and treedef_key(a) == treedef_key(b)
    assert treedef_key(a) != key_of(Tagged(1.0, -math.nan))


def test_treedef_key_is_flat_and_serves_as_a_cache_key() -> None:
    key = key_of({"w": [1.0, {"x": (2.0,)}], "b": Tagged(1.0, "t")})
    assert not any(isinstance(token, TreeDef) for token in key.tokens)
    cache = {key: "hit"}
    assert cache[key_of({"w": [0.0, {"x": (7.0,)}], "b": Tagged(5.0, "t")})] == "hit"
    assert key_of({"b": Tagged(5.0, "t"), "w": [0.0, {"x": (7.0,)}]}) not in cache  # another order
    assert key_of({"w": [1.0, {"x": (2.0,)}], "b": Tagged(1.0, "u")}) not in cache


def test_treedef_key_names_an_unhashable_static_field() -> None:
    with pytest.raises(TypeError, match=r"'tag' of the Tagged at \['m'\]\[1\] holds an unhashable list"):
        key_of({"m": [1.0, Tagged(2.0, [1, 2])]})
    with pytest.raises(TypeError, match="static field 'tag' of the Tagged at the root"):
        key_of(Tagged(2.0, (1, {"a": 1})))


def test_treedef_functions_name_a_wrong_argument() -> None:
    td = fg.tree_structure([1.0])
    for call, arg in [
        (lambda: treedef_key([1.0]), "treedef"),
        (lambda: treedef_equal(td, None), "b"),
        (lambda: treedef_equal("x", td), "a"),
        (lambda: structure_mismatch(td, [1.0]), "b"),
    ]:
        with pytest.raises(TypeError, match=f"{arg} must be a TreeDef"):
            call()


def test_a_structure_held_as_a_static_value_is_keyed_by_its_own_key():
    # (an optimiser state keeps its params' structure as a static field)
    from dataclasses import dataclass

    from fgrad.engine.tree import static_field, tree_structure, treedef_key

    @dataclass(frozen=True)
    class State:
        count: float
        structure: object = static_field()

    same = tree_structure({"w": [1.0, 2.0]})
    other = tree_structure({"w": [1.0, 2.0]})  # equal, another object
    signed = tree_structure({"w": [State(1.0, -0.0)]})
    unsigned = tree_structure({"w": [State(1.0, 0.0)]})
    key = treedef_key(tree_structure(State(1.0, same)))
    assert key == treedef_key(tree_structure(State(2.0, same)))
    assert key == treedef_key(tree_structure(State(2.0, other)))
    assert key != treedef_key(tree_structure(State(1.0, tree_structure({"w": [1.0]}))))
    assert treedef_key(tree_structure(State(1.0, signed))) != treedef_key(
        tree_structure(State(1.0, unsigned))
    )


def test_structures_held_inside_held_structures_any_depth_deep_are_keyed():
    from dataclasses import dataclass

    from fgrad.engine.tree import static_field, tree_structure, treedef_key

    @dataclass(frozen=True)
    class Box:
        v: float
        held: object = static_field()

    def nested(depth: int, inner: float) -> Any:
        td = tree_structure(inner)
        for _ in range(depth):
            td = tree_structure(Box(0.0, td))
        return td

    # (this hung past Python's recursion limit when each level recursed)
    deep = treedef_key(nested(2000, 1.0))
    assert deep == treedef_key(nested(2000, 1.0))
    assert deep != treedef_key(nested(1999, 1.0))
