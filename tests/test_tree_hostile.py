"""Pytrees given what they should refuse, or objects that misbehave: clear
errors with paths, and results of the right type (never silently wrong)."""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict, defaultdict, namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
from pyrsistent import (
    CheckedPMap,
    CheckedPSet,
    CheckedPVector,
    InvariantException,
    PClass,
    PRecord,
    field,
    pbag,
    pdeque,
    plist,
    pmap,
    pset,
    pvector,
)

import fgrad as fg
from fgrad.compilers import treegen
from fgrad.engine.tree import (
    TreeDef,
    structure_mismatch,
    tree_paths,
    unflatten_persistent,
    unsupported_container,
)


def round_trip(tree: Any) -> Any:
    return fg.tree_unflatten(*reversed(fg.tree_flatten(tree)))


def sixteen() -> tuple[float, ...]:
    return tuple(float(i) for i in range(treegen.MIN_LEAVES))


# Wrong arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("unflatten", [fg.tree_unflatten, unflatten_persistent])
def test_unflatten_names_a_wrong_argument(unflatten: Any) -> None:
    # Regression: AttributeError: 'NoneType' object has no attribute 'num_leaves'.
    td = fg.tree_structure([1.0, 2.0])
    name = unflatten.__name__
    for bad in (None, [1.0, 2.0], (1, 2), "td"):
        with pytest.raises(TypeError, match=f"{name}: treedef must be a TreeDef .*got {type(bad).__name__}"):
            unflatten(bad, [1.0, 2.0])
    with pytest.raises(TypeError, match=rf"the call is {name}\(treedef, leaves\)"):
        unflatten([1.0, 2.0], td)  # (the arguments swapped)
    with pytest.raises(TypeError, match=f"{name}: leaves must be an iterable .*got float"):
        unflatten(fg.tree_structure(1.0), 1.0)
    with pytest.raises(TypeError, match="tree_paths: treedef must be a TreeDef"):
        tree_paths([1.0])  # type: ignore[arg-type]


def test_tree_map_refuses_a_non_callable_at_once() -> None:
    # Regression: "'int' object is not callable", after flattening every tree.
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for bad in (3, None, "lambda x: x", [abs]):
        with pytest.raises(TypeError, match=f"tree_map: f must be callable, got a {type(bad).__name__}"):
            fg.tree_map(bad, cyclic)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tree_map\(f, tree, \*rest\)"):
        fg.tree_map({"a": 1.0}, lambda x: x)  # type: ignore[arg-type]


# pyrsistent ------------------------------------------------------------------------------


class Record(PRecord):  # type: ignore[type-arg]
    x = field(type=float, mandatory=True)
    y = field(type=float, invariant=lambda v: (v >= 0, "y must be >= 0"))


class Floats(CheckedPVector):  # type: ignore[type-arg]
    __type__ = float


class Weights(CheckedPMap):  # type: ignore[type-arg]
    __key_type__ = str
    __value_type__ = float


def test_checked_pyrsistent_containers_keep_their_type() -> None:
    # Regression: a PRecord (CheckedPMap, CheckedPVector) came back as a
    # plain PMap (PVector).
    for tree in (Record(x=1.0, y=2.0), Floats([1.0, 2.0]), Weights({"a": 1.0, "b": 2.0})):
        nested = round_trip({"in": [tree]})["in"][0]
        for rebuilt in (round_trip(tree), fg.tree_map(lambda v: v, tree), nested):
            assert type(rebuilt) is type(tree) and rebuilt == tree


def test_gradients_of_checked_pyrsistent_containers_keep_their_type() -> None:
    grads = fg.grad(lambda r: r["x"] * r["y"] * r["y"])(Record(x=2.0, y=3.0))
    assert type(grads) is Record and dict(grads) == {"x": 9.0, "y": 12.0}
    grads = fg.grad(lambda v: v[0] * v[1])(Floats([2.0, 5.0]))
    assert type(grads) is Floats and list(grads) == [5.0, 2.0]
    grads = fg.grad(lambda v: v[0]["a"] * 3.0)(pvector([Weights({"a": 1.0})]))
    assert type(grads[0]) is Weights and grads[0]["a"] == 3.0


def test_checked_containers_are_rebuilt_without_their_checks() -> None:
    # As dataclasses skip __post_init__: a tree of other values (nodes,
    # strings) takes the record's shape.
    out = fg.tree_map(lambda v: f"<{v}>", Record(x=1.0, y=2.0))
    assert type(out) is Record and dict(out) == {"x": "<1.0>", "y": "<2.0>"}
    negative = fg.tree_map(lambda v: -v, Record(x=1.0, y=2.0))
    assert negative["y"] == -2.0
    with pytest.raises(InvariantException, match="y must be >= 0"):
        negative.set(y=-3.0)  # (its own updates are still checked)


@pytest.mark.parametrize(
    "container, name",
    [
        (pset([1.0, 2.0]), "PSet"),
        (CheckedPSet([1.0]), "CheckedPSet"),
        (pbag([1.0]), "PBag"),
        (plist([1.0, 2.0]), "PList"),
        (plist(), "_EmptyPList"),
        (pdeque([1.0]), "PDeque"),
    ],
)
def test_other_pyrsistent_containers_are_refused_with_what_to_use(container: Any, name: str) -> None:
    # Regression: silently a leaf, then "not a real number" from grad.
    why = unsupported_container(container)
    assert why is not None and name in why and "pytree containers are" in why
    with pytest.raises(TypeError, match=rf"tree_flatten: at \['p'\]\[1\]: a {name} .*use a") as info:
        fg.tree_flatten({"p": [1.0, container]})
    assert "PRecord" in str(info.value)
    with pytest.raises(TypeError, match=name):
        fg.grad(lambda t: 1.0)({"p": [1.0, container]})
    with pytest.raises(TypeError, match=name):
        fg.tree_map(lambda x: x, container)


def test_a_pclass_is_refused_and_pointed_to_dataclasses() -> None:
    class Point(PClass):  # type: ignore[misc]
        x = field()

    with pytest.raises(TypeError, match="at the root: a Point \\(a PClass\\) .*frozen dataclass"):
        fg.tree_leaves(Point(x=1.0))


def test_unsupported_container_is_none_for_what_pytrees_take() -> None:
    for x in (1.0, "s", None, [1.0], pmap(), pvector(), Record(x=1.0), frozenset({1}), {1, 2}):
        assert unsupported_container(x) is None


# Safe messages -------------------------------------------------------------------------------


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_keys_whose_repr_raises_do_not_break_paths_or_messages() -> None:
    # Regression: the key's RuntimeError escaped from tree_paths and from
    # every error message that names a path.
    key = BadRepr()
    assert tree_paths(fg.tree_structure({key: [1.0]})) == ["[<BadRepr whose repr failed>][0]"]
    where = structure_mismatch(fg.tree_structure({key: [1.0]}), fg.tree_structure({key: [1.0, 2.0]}))
    assert where == "at [<BadRepr whose repr failed>]: list of length 1 vs list of length 2"
    with pytest.raises(ValueError, match=r"keys \[<BadRepr whose repr failed>\] vs dict with keys \['a'\]"):
        fg.tree_map(lambda a, b: a, {key: 1.0}, {"a": 1.0})
    with pytest.raises(TypeError, match=r"at \[<BadRepr whose repr failed>\]: a PSet"):
        fg.tree_flatten({key: pset()})
    cyclic: dict[Any, Any] = {}
    cyclic[key] = [cyclic]
    with pytest.raises(ValueError, match=r"at \[<BadRepr whose repr failed>\]\[0\] is the one at the root"):
        fg.tree_flatten(cyclic)
    with pytest.raises(ValueError, match="Tagged\\(tag=<BadRepr whose repr failed>\\)"):
        fg.tree_map(lambda a, b: a, Tagged(1.0, BadRepr()), Tagged(1.0, BadRepr()))


@dataclass(frozen=True)
class Tagged:
    w: Any
    tag: Any = fg.static_field(default=None)


def test_static_values_that_cannot_compare_give_a_clear_mismatch() -> None:
    # Regression: numpy's "truth value of an array is ambiguous" escaped.
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match=r"tree_map: .*at the root: Tagged\(tag=array.*cannot be compared"):
        fg.tree_map(lambda a, b: a + b, Tagged(1.0, np.array([1.0, 2.0])), Tagged(1.0, np.array([1.0, 2.0])))
    same = Tagged(1.0, np.array([1.0, 2.0]))
    assert fg.tree_map(lambda a, b: a + b, same, same).w == 2.0


# Misbehaving containers ---------------------------------------------------------------------


class LyingKeys(dict):  # type: ignore[type-arg]
    def keys(self) -> Any:
        return ["a", "ghost"]


class RaisingGet(dict):  # type: ignore[type-arg]
    def __getitem__(self, k: Any) -> Any:
        raise ValueError("no items today")


class HashOnce:
    calls = 0

    def __hash__(self) -> int:
        HashOnce.calls += 1
        if HashOnce.calls > 1:
            raise RuntimeError("hashed twice")
        return 1


def test_containers_that_cannot_be_read_are_refused_with_the_path() -> None:
    # Regression: KeyError, or the container's own error, with no hint of where.
    for bad, why in [
        (LyingKeys(a=1.0), "the LyingKeys's keys\\(\\) lists 'ghost', which its \\[\\] does not find"),
        (RaisingGet(a=1.0), "reading the items of the RaisingGet raised ValueError\\('no items today'\\)"),
        ({HashOnce(): 1.0}, "reading the items of the dict raised RuntimeError\\('hashed twice'\\)"),
    ]:
        with pytest.raises(TypeError, match=rf"tree_flatten: at \[0\]\.w: {why}") as info:
            fg.tree_flatten([Tagged(bad)])
        assert info.value.__cause__ is not None  # (the container's own error, chained)


@dataclass
class Unset:
    x: float
    y: float = dataclasses.field(init=False)


@dataclass(slots=True)
class UnsetSlots:
    x: float
    y: float = dataclasses.field(init=False)


@dataclass
class SetLater:
    x: float
    y: float = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.y = 2 * self.x


def test_dataclass_fields_that_were_never_set_are_named() -> None:
    # Regression: AttributeError from inside the flattener.
    for cls in (Unset, UnsetSlots):
        with pytest.raises(TypeError, match=rf"at \['m'\]: the {cls.__name__}'s field 'y' cannot be read"):
            fg.tree_flatten({"m": cls(1.0)})
    assert fg.tree_leaves(SetLater(1.5)) == [1.5, 3.0]
    grads = fg.grad(lambda m: m.x * m.y)(SetLater(1.5))
    assert type(grads) is SetLater and (grads.x, grads.y) == (3.0, 1.5)


@dataclass(frozen=True, slots=True)
class FrozenSlots:
    w: Any
    scale: float = fg.static_field(default=2.0)


def test_slotted_and_frozen_dataclasses_round_trip_and_differentiate() -> None:
    m = FrozenSlots((1.0, 2.0))
    assert round_trip(m) == m and type(round_trip(m)) is FrozenSlots
    grads = fg.grad(lambda m: m.w[0] * m.w[1] * m.scale)(m)
    assert type(grads) is FrozenSlots and grads.w == (4.0, 2.0) and grads.scale == 2.0
    big = FrozenSlots(sixteen())
    for _ in range(3):  # compiled on the second meeting
        assert round_trip(big) == big


class DropsItems(dict):  # type: ignore[type-arg]
    def __init__(self, size: int = 0) -> None:
        super().__init__()
        self.size = size


class TwoArgs(list):  # type: ignore[type-arg]
    def __init__(self, a: Any, b: Any) -> None:
        super().__init__([a, b])


def test_subclasses_that_cannot_be_rebuilt_from_their_items_say_so() -> None:
    # Regression: DropsItems came back empty, silently (its constructor
    # takes a size, not the items).
    d = DropsItems(3)
    d["a"] = 1.0
    with pytest.raises(TypeError, match=r"unflatten: at \['k'\]: DropsItems\(a dict of the items\) does not"):
        round_trip({"k": d})
    with pytest.raises(TypeError, match=r"at \[1\]: could not rebuild the TwoArgs .*missing 1 required"):
        round_trip([1.0, TwoArgs(1.0, 2.0)])
    with pytest.raises(TypeError, match="DropsItems"):
        fg.grad(lambda t: t["a"])(d)


class Pair(tuple):  # type: ignore[type-arg]
    def __new__(cls, a: Any, b: Any) -> Pair:
        return super().__new__(cls, (a, b))


class Celsius(namedtuple("Celsius", ["degrees", "offset"])):
    """A namedtuple whose constructor converts its items (float() of a node fails)."""

    def __new__(cls, degrees: Any, offset: Any = 0.0) -> Celsius:
        return super().__new__(cls, float(degrees), float(offset))


Defaults = namedtuple("Defaults", ["a", "b"], defaults=[5.0])


def test_tuples_are_rebuilt_from_their_items_without_their_constructor() -> None:
    # Regression: a tuple subclass or namedtuple whose __new__ takes other
    # arguments, or converts them, failed to rebuild (even under grad).
    assert round_trip(Pair(1.0, 2.0)) == (1.0, 2.0) and type(round_trip(Pair(1.0, 2.0))) is Pair
    assert round_trip(Defaults(1.0)) == Defaults(1.0, 5.0)
    grads = fg.grad(lambda c: c.degrees * c.degrees + c.offset)(Celsius(3.0, 1.0))
    assert type(grads) is Celsius and grads == (6.0, 1.0)


class FakeFields(tuple):  # type: ignore[type-arg]
    _fields = ("a",)


class NotFields(tuple):  # type: ignore[type-arg]
    _fields = "a b"


def test_tuples_with_odd_fields_are_refused_or_taken_as_tuples() -> None:
    with pytest.raises(TypeError, match="at the root: the FakeFields has 2 items but 1 _fields"):
        fg.tree_flatten(FakeFields((1.0, 2.0)))
    leaves, td = fg.tree_flatten(NotFields((1.0, 2.0)))
    assert leaves == [1.0, 2.0] and tree_paths(td) == ["[0]", "[1]"]
    assert type(fg.tree_unflatten(td, leaves)) is NotFields


class Sneaky(namedtuple("Sneaky", ["a", "b"])):
    """A namedtuple whose length and iteration may lie (per instance)."""

    def __len__(self) -> int:
        return 7 if getattr(self, "lie_len", False) else 2

    def __iter__(self) -> Any:
        items = tuple.__iter__(self)
        return iter([*items, 9.0]) if getattr(self, "lie_iter", False) else items


def test_lying_lengths_and_iterators_give_the_general_walks_answer_compiled_or_not() -> None:
    plain = Sneaky(sixteen()[:8], sixteen()[8:])
    for _ in range(3):  # compiled for Sneaky on the second meeting
        assert fg.tree_leaves(plain) == list(sixteen())
    long_len = Sneaky(sixteen()[:8], sixteen()[8:])
    long_len.lie_len = True  # type: ignore[attr-defined]
    assert fg.tree_leaves(long_len) == list(sixteen())  # (iterated, its length ignored)
    extra = Sneaky(sixteen()[:8], sixteen()[8:])
    extra.lie_iter = True  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="the Sneaky has 3 items but 2 _fields"):
        fg.tree_leaves(extra)


class Liar:
    """Claims to be a list."""

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return list


def test_objects_lying_about_their_class_are_leaves() -> None:
    # Regression: taken as a list, then "not iterable".
    liar = Liar()
    assert fg.tree_leaves([liar, 1.0]) == [liar, 1.0]


def test_an_ordered_dict_keeps_its_order() -> None:
    # Regression: rebuilt in sorted order, unequal to the original.
    od = OrderedDict([("b", 1.0), ("c", 2.0), ("a", 3.0)])
    back = round_trip(od)
    assert type(back) is OrderedDict and back == od and list(back) == ["b", "c", "a"]
    assert fg.tree_leaves(od) == [3.0, 1.0, 2.0]  # (leaves in sorted key order, as for any dict)
    other_order = OrderedDict([("a", 3.0), ("b", 1.0), ("c", 2.0)])
    assert fg.tree_structure(od) != fg.tree_structure(other_order)
    assert structure_mismatch(fg.tree_structure(od), fg.tree_structure(other_order)) is None
    summed = fg.tree_map(lambda x, y: x + y, od, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert dict(summed) == {"a": 4.0, "b": 2.0, "c": 3.0}


class Counts(defaultdict):  # type: ignore[type-arg]
    pass


def test_a_defaultdict_subclass_keeps_its_type_and_factory() -> None:
    # Regression: Counts(items) made the items its factory ("first argument
    # must be callable").
    back = round_trip(Counts(list, {"b": 1.0, "a": 2.0}))
    assert type(back) is Counts and back.default_factory is list and back == {"a": 2.0, "b": 1.0}


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_compiled_flatteners_do_not_take_str_subclass_keys_for_strings() -> None:
    # Regression: a flattener compiled for {"red": ..} took {Color.RED: ..}
    # (equal keys) and handed back the TreeDef with plain string keys.
    plain = {"red": sixteen(), "blue": 1.0}
    for _ in range(3):
        assert fg.tree_structure(plain).meta == ("blue", "red")
    enum_keys = {Color.RED: sixteen(), Color.BLUE: 1.0}
    for _ in range(3):
        meta = fg.tree_structure(enum_keys).meta
        assert [type(k) for k in meta] == [Color, Color]
        assert all(type(k) is Color for k in fg.tree_unflatten(*reversed(fg.tree_flatten(enum_keys))))


def test_treedefs_that_do_not_add_up_are_refused() -> None:
    # Regression: an unknown kind rebuilt as None; too few leaves raised StopIteration.
    leaf = fg.tree_structure(1.0)
    with pytest.raises(ValueError, match=r"at the root: the treedef does not add up \(an unknown kind"):
        fg.tree_unflatten(TreeDef("bogus", None, None, (), 0), [])
    with pytest.raises(ValueError, match=r"at \[2\]: the treedef holds more leaves than its num_leaves, 2"):
        fg.tree_unflatten(TreeDef("list", list, None, (leaf,) * 3, 2), [1.0, 2.0])
    with pytest.raises(ValueError, match="holds 1 leaves but its num_leaves says 2"):
        fg.tree_unflatten(TreeDef("list", list, None, (leaf,), 2), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"at the root: the treedef does not add up \(1 keys for 2 children"):
        fg.tree_unflatten(TreeDef("map", dict, ("a",), (leaf, leaf), 2), [1.0, 2.0])
    with pytest.raises(TypeError, match="a child is a str, not a TreeDef"):
        fg.tree_unflatten(TreeDef("list", list, None, ("*",), 1), [1.0])  # type: ignore[arg-type]
    assert treegen.unflattener(TreeDef("list", list, None, (leaf,) * 20, 19)) is None


class Ouroboros(list):  # type: ignore[type-arg]
    """A list that, iterated, yields itself."""

    def __iter__(self) -> Any:
        return iter([1.0, self])


class NamelessMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name")


class Nameless(tuple, metaclass=NamelessMeta):  # type: ignore[type-arg, misc]
    pass


def test_a_container_that_yields_itself_is_a_cycle() -> None:
    with pytest.raises(ValueError, match=r"the Ouroboros at \[1\] is the one at the root"):
        fg.tree_flatten(Ouroboros())


def test_reprs_and_messages_survive_a_type_whose_name_raises() -> None:
    td = TreeDef("tuple", Nameless, None, (fg.tree_structure(1.0),), 1)
    assert repr(td) == "tuple(*)"
    where = structure_mismatch(td, fg.tree_structure([1.0]))
    assert where == "at the root: tuple of length 1 vs list of length 1"
