"""jit at the edges: strict cache keys, numpy scalars and arrays, nan
constants, the first call, nan debugging, clear errors and hostile inputs.

Results are compared with eager calls bit for bit, nan payloads included.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import threading
import types
from collections import namedtuple
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import pmap, pvector

import fgrad as fg
from fgrad.compilers import codegen
from fgrad.compilers.jit import tracing
from fgrad.compilers.jit.keys import strict_key
from fgrad.datasets import moons
from fgrad.demo import vmap_loss
from fgrad.nn import MLP


def exact(tree: Any) -> list[Any]:
    """Every leaf's bits (a nan's sign and payload too), and its type where it is not a float."""
    out: list[Any] = []
    for leaf in fg.tree_leaves(tree):
        if isinstance(leaf, float):
            out.append(struct.pack("<d", leaf))
        else:
            out.append((type(leaf), leaf))
    return out


def nan_with(payload: int, negative: bool = False) -> float:
    x: float = struct.unpack(
        "<Q", struct.pack("<Q", (0xFFF << 52 if negative else 0x7FF << 52) | (1 << 51) | payload)
    )[0]
    return struct.unpack("<d", struct.pack("<Q", x))[0]  # type: ignore[no-any-return]


NAN_A, NAN_B, NEG_NAN = nan_with(1), nan_with(0xBEEF), nan_with(0, negative=True)


def test_the_nans_used_here_differ_in_bits() -> None:
    assert len({struct.pack("<d", x) for x in (NAN_A, NAN_B, NEG_NAN, math.nan)}) == 4
    assert all(x != x for x in (NAN_A, NAN_B, NEG_NAN))


def calls(step: Any, f: Any, argsets: list[tuple[Any, ...]], **kwargs: Any) -> None:
    """Each call of ``step`` (twice: the tracing call and a cached one) equals ``f``'s, bit for bit."""
    for args in argsets + argsets:
        assert exact(step(*args, **kwargs)) == exact(f(*args, **kwargs)), args


# 1. Strict cache keys ------------------------------------------------------------------------


def test_static_signed_zeros_and_nans_of_other_payloads_do_not_share_a_path() -> None:
    def f(x: Any, s: Any) -> Any:
        return fg.div(x, s), x * s, x * math.copysign(1.0, s), x + s

    step = fg.jit(f, static_argnums=1)
    calls(step, f, [(-1.0, 0.0), (-1.0, -0.0), (2.0, NAN_A), (2.0, NAN_B), (2.0, NEG_NAN)])
    assert step.cache_info().traces == 5


def test_a_nan_static_argument_hits_its_path_again() -> None:
    # hash(nan) is the object's identity: an equal-bits nan is another object.
    step = fg.jit(lambda x, s: x + s, static_argnums=1)
    for _ in range(3):
        assert exact(step(1.0, nan_with(0xBEEF))) == exact(1.0 + NAN_B)
    assert step.cache_info().traces == 1


Opts = namedtuple("Opts", "flag scale")


@dataclasses.dataclass(frozen=True)
class Config:
    flag: Any
    scale: float


CONTAINERS = {
    "tuple": (lambda flag, scale: (flag, scale), lambda o: o),
    "nested tuple": (lambda flag, scale: ((flag,), ((scale,),)), lambda o: (o[0][0], o[1][0][0])),
    "namedtuple": (Opts, lambda o: (o.flag, o.scale)),
    "frozen dataclass": (Config, lambda o: (o.flag, o.scale)),
    "dataclass in a tuple": (lambda flag, scale: (Config(flag, scale),), lambda o: (o[0].flag, o[0].scale)),
}


@pytest.mark.parametrize("container", list(CONTAINERS))
def test_static_values_inside_containers_are_keyed_by_type_and_bits(container: str) -> None:
    make, get = CONTAINERS[container]

    def f(x: Any, opts: Any) -> Any:
        flag, scale = get(opts)
        kind = 2.0 if flag is True else (3.0 if type(flag) is float else 5.0)
        return x * kind * math.copysign(1.0, scale)

    step = fg.jit(f, static_argnums=1)
    calls(step, f, [(1.5, make(flag, scale)) for flag in (1, True, 1.0) for scale in (0.0, -0.0)])
    assert step.cache_info().traces == 6


def test_frozensets_and_pyrsistent_static_values_are_keyed_strictly() -> None:
    def f(x: Any, s: Any) -> Any:
        zero = s["a"] if isinstance(s, type(pmap())) else (s[0] if isinstance(s, type(pvector())) else min(s))
        return x * math.copysign(1.0, zero)

    step = fg.jit(f, static_argnums=1)
    values = [
        frozenset({0.0}),
        frozenset({-0.0}),
        frozenset({-0.0, 2.0}),
        frozenset({2.0, 0.0}),
        pvector([0.0]),
        pvector([-0.0]),
        pmap({"a": 0.0}),
        pmap({"a": -0.0}),
    ]
    calls(step, f, [(1.0, v) for v in values])
    assert step.cache_info().traces == len(values)

    def g(x: Any, s: Any) -> Any:
        return x * (2.0 if any(e is True for inner in s for e in inner) else 3.0)

    nested = fg.jit(g, static_argnums=1)
    sets = [frozenset({frozenset({1}), frozenset({5})}), frozenset({frozenset({True}), frozenset({5})})]
    calls(nested, g, [(1.0, s) for s in sets])
    assert nested.cache_info().traces == 2


def test_a_set_of_two_nans_of_the_same_bits_is_not_a_set_of_one() -> None:
    step = fg.jit(lambda x, s: x * len(s), static_argnums=1)
    for s in (frozenset({nan_with(7), nan_with(7)}), frozenset({nan_with(7)}), frozenset({nan_with(7), 1.0})):
        assert step(1.0, s) == len(s) and step(1.0, s) == len(s)


def test_keyword_arguments_are_keyed_by_type_and_bits() -> None:
    def f(x: Any, *, s: Any) -> Any:
        return fg.div(x, s) if s is not True else x

    step = fg.jit(f)
    for s in (0.0, -0.0, 1, True, 1.0, NAN_A, NAN_B):
        for _ in range(2):
            assert exact(step(-1.0, s=s)) == exact(f(-1.0, s=s)), s
    assert step.cache_info().traces == 7


@dataclasses.dataclass
class Scaled:
    w: float
    s: Any = fg.static_field(default=1.0)


def test_static_dataclass_fields_are_keyed_by_type_and_bits() -> None:
    def f(m: Scaled) -> Any:
        return fg.div(m.w, m.s) if m.s is not True else m.w * 7.0

    step = fg.jit(f)
    calls(step, f, [(Scaled(-1.0, s),) for s in (0.0, -0.0, 1, True, 1.0, NAN_A, NAN_B)])
    assert step.cache_info().traces == 7


def test_dict_keys_of_traced_arguments_are_keyed_by_type_and_bits() -> None:
    def f(d: Any) -> Any:
        return {k: v * (2.0 if type(k) is float else 3.0) * math.copysign(1.0, k) for k, v in d.items()}

    step = fg.jit(f)
    dicts = [{1: 1.0}, {1.0: 1.0}, {True: 1.0}, {0.0: 1.0}, {-0.0: 1.0}, {-0.0: 2.0, 1: 3.0}]
    for d in dicts + dicts:
        got, want = step(d), f(d)
        assert exact(got) == exact(want)
        # The output's keys are this call's, not the first trace's.
        assert [(type(k), struct.pack("<d", k)) for k in got] == [
            (type(k), struct.pack("<d", k)) for k in want
        ]


def test_output_keys_made_from_static_arguments_take_their_type() -> None:
    step = fg.jit(lambda x, k: {k: x}, static_argnums=1)
    for k in (1, 1.0, True, 1, -0.0, 0.0):
        out = step(2.0, k)
        assert [(type(key), repr(key)) for key in out] == [(type(k), repr(k))]


def test_the_same_static_objects_as_the_last_call_are_not_hashed_again() -> None:
    hashes = []

    class Data:
        def __hash__(self) -> int:
            hashes.append(1)
            return 7

    data = Data()
    step = fg.jit(lambda x, d, *, scale: fg.sum(x) * scale, static_argnums=1)
    model = [float(i) for i in range(20)]  # big enough for a compiled flattener: the same TreeDef object
    for _ in range(5):
        step(model, data, scale=2.0)
    assert step.cache_info().traces == 1
    assert len(hashes) == 1  # keyed once, on the first call
    other = Data()
    step(model, other, scale=2.0)  # another object: keyed (and traced: Data compares by identity)
    assert len(hashes) == 2 and step.cache_info().traces == 2


# 2. Guards against numpy scalars -------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, None], ids=["table", "compiled"])
def test_guards_against_numpy_scalars_hold_in_both_modes(limit: Any) -> None:
    np = pytest.importorskip("numpy")

    def f(x: Any) -> Any:
        y = x * 2.0 if x > np.float64(0.5) else x
        z = y * np.float32(3.0) if np.float64(0.25) < y else y
        return z + 1.0 if x != np.int64(4) else z

    step = fg.jit(f, max_compiled_ops=limit)
    for x in (1.0, 2.0, 3.0, 1.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 1
    for x in (0.1, 4.0, 0.1, 4.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 3


# 3. Non-finite constants --------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, None], ids=["table", "compiled"])
def test_nan_and_infinite_constants_keep_their_bits(limit: Any) -> None:
    def f(x: Any) -> Any:
        return x + NAN_A, x * NAN_B, x - NEG_NAN, fg.div(x, math.inf), x * -math.inf, x > NAN_A

    step = fg.jit(f, max_compiled_ops=limit)
    for x in (2.0, 3.0, -1.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 1
    if limit is None:
        assert "NAN" not in step.source(2.0)


def test_ints_too_long_for_repr_are_constants_too() -> None:
    step = fg.jit(lambda x, n: x * 2.0 if x < n else x, static_argnums=1)
    for _ in range(2):
        assert step(1.0, 10**5000) == 2.0 and step(1.0, -(10**5000)) == 1.0


# 4. Every call returns what the compiled code returns ----------------------------------------


def test_the_tracing_call_returns_the_compiled_values_of_vmaps_numpy_code() -> None:
    pytest.importorskip("numpy")
    xs, ys = moons(30, noise=0.1, seed=2)
    model = MLP.init([2, 8, 8, 1], seed=2)
    step = fg.jit(fg.value_and_grad(vmap_loss))
    first, second, third = step(model, xs, ys), step(model, xs, ys), step(model, xs, ys)
    assert exact(first) == exact(second) == exact(third)
    assert "over the batch" in step.source(model, xs, ys)
    scalar = fg.jit(fg.value_and_grad(lambda w, x: fg.tanh(w * x) * x))
    for w in (0.5, -1.5, 0.5):
        assert exact(scalar(w, 2.0)) == exact(fg.value_and_grad(lambda w, x: fg.tanh(w * x) * x)(w, 2.0))


def test_a_path_refusing_its_own_arguments_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tracing.compile_trace  # (where jit traces a new path and has it compiled)

    def refusing(*args: Any) -> Any:
        run, source, n = real(*args)

        def refuse(leaves: Any) -> Any:
            raise codegen.GuardFailed

        return refuse, source, n

    monkeypatch.setattr(tracing, "compile_trace", refusing)
    with pytest.raises(RuntimeError, match="internal error.*refuses the arguments it was traced with"):
        fg.jit(lambda x: x * 2.0)(1.0)


# 5. Nan debugging sees compiled paths --------------------------------------------------------


def test_debug_nans_raises_in_a_jitted_gradient_at_the_op_and_line() -> None:
    step = fg.jit(fg.grad(lambda x: fg.sqrt(x - 2.0) * x))
    assert step(3.0) == step(3.0)  # traced and compiled
    assert math.isnan(step(1.0))  # nan debugging off: nan flows
    with fg.debug_nans():
        with pytest.raises(fg.NanError, match=r"sqrt produced nan .*test_jit_edges\.py:\d+") as info:
            step(1.0)
    assert "lambda" in str(info.value)
    assert math.isnan(step(1.0)) and step.cache_info().traces == 1


def test_debug_nans_raises_in_a_jitted_training_step() -> None:
    def loss(p: Any, x: Any) -> Any:
        return fg.log(p["w"] * x) + p["b"] * p["b"]

    def train_step(p: Any, x: Any) -> Any:
        value, grads = fg.value_and_grad(loss)(p, x)
        return fg.tree_map(lambda a, g: a - 0.1 * g, p, grads), value

    step = fg.jit(train_step)
    params = {"w": 1.0, "b": 0.5}
    for x in (1.0, 2.0, 1.0):
        assert exact(step(params, x)) == exact(train_step(params, x))
    with fg.debug_nans():
        assert exact(step(params, 2.0)) == exact(train_step(params, 2.0))  # no nan: the same values
        with pytest.raises(fg.NanError, match=r"log produced nan from inputs \(-1\.0,\).*in loss"):
            step(params, -1.0)
    assert math.isnan(step(params, -1.0)[1])


def test_debug_nans_sees_a_jitted_vmap() -> None:
    pytest.importorskip("numpy")

    def f(w: Any, xs: Any) -> Any:
        return fg.sum(fg.vmap(lambda w, x: fg.sqrt(w * x), in_axes=(None, 0))(w, xs))

    step = fg.jit(f)
    assert step(1.0, [1.0, 4.0]) == 3.0
    assert math.isnan(step(1.0, [1.0, -4.0]))
    with fg.debug_nans(), pytest.raises(fg.NanError, match="sqrt produced nan"):
        step(1.0, [1.0, -4.0])


# 6. Clear errors ---------------------------------------------------------------------------


def test_source_with_missing_or_wrong_arguments_says_so() -> None:
    step = fg.jit(lambda x, y: x * y)
    with pytest.raises(TypeError, match=r"source\(\*args\) takes the arguments of a call.*missing.*'x'"):
        step.source()
    with pytest.raises(TypeError, match=r"source.*missing.*'y'"):
        step.source(1.0)
    with pytest.raises(TypeError, match=r"source.*unexpected keyword argument 'z'|source.*too many"):
        step.source(1.0, 2.0, z=3.0)
    assert "def compiled" in step.source(1.0, 2.0)
    assert step.cache_info().traces == 1
    inner = fg.jit(lambda x: x)
    with pytest.raises(TypeError, match="inside another transform"):
        fg.grad(lambda x: inner.source(x) and x)(1.0)


def test_source_under_debug_nans_still_shows_the_code() -> None:
    step = fg.jit(lambda x: x * 3.0)
    with fg.debug_nans():
        assert "x0 * 3.0" in step.source(1.0)


@pytest.mark.parametrize(
    "make, where, what",
    [
        (lambda x: (x, (x * i for i in range(3))), r"the output at \[1\] is a generator", TypeError),
        (lambda x: (i for i in range(3)), "the output is a generator", TypeError),
        (
            lambda x: {"ns": types.SimpleNamespace(v=x)},
            r"the output at \['ns'\] is a SimpleNamespace holding a",
            fg.EscapedNodeError,
        ),
        (
            lambda x: [1.0, lambda: x * 2.0],
            r"the output at \[1\] is a function holding a",
            fg.EscapedNodeError,
        ),
        (lambda x: (x, iter([x])), r"the output at \[1\] is a list_iterator holding", fg.EscapedNodeError),
    ],
)
def test_outputs_carrying_a_node_out_or_running_once_are_refused(make: Any, where: str, what: type) -> None:
    with pytest.raises(what, match=where):
        fg.jit(make)(2.0)


def test_a_node_of_a_transform_that_returned_cannot_be_an_output() -> None:
    kept: list[Any] = []

    def f(x: Any) -> Any:
        fg.grad(lambda y: kept.append(y) or y * x)(1.0)
        return x, kept[-1]

    with pytest.raises(fg.EscapedNodeError, match="was used after grad returned"):
        fg.jit(f)(2.0)


def test_outputs_that_are_plain_constants_still_come_back() -> None:
    step = fg.jit(lambda x: (x * 2.0, "label", None, 3, frozenset({1})))
    assert step(1.0) == step(1.0) == (2.0, "label", None, 3, frozenset({1}))


def test_jit_of_a_non_callable_fails_at_once() -> None:
    for bad in (3, "f", None, [lambda x: x]):
        with pytest.raises(TypeError, match="jit: f must be a callable"):
            fg.jit(bad)  # type: ignore[arg-type]


def test_bad_static_argnums_are_named() -> None:
    with pytest.raises(ValueError, match=r"argument 2 but the call has 2 .* at most \(<lambda> takes 2\)"):
        fg.jit(lambda x, n: x, static_argnums=2)
    with pytest.raises(ValueError, match=r"static_argnums names argument -3"):
        fg.jit(lambda x, n: x, static_argnums=-3)
    with pytest.raises(ValueError, match=r"lists argument 1 twice"):
        fg.jit(lambda x, n: x, static_argnums=(1, 1))
    with pytest.raises(TypeError, match="static_argnums must be an int or a tuple of ints"):
        fg.jit(lambda x, n: x, static_argnums=True)
    with pytest.raises(TypeError, match="static_argnums must be an int or a tuple of ints"):
        fg.jit(lambda x, n: x, static_argnums="1")  # type: ignore[arg-type]
    both = fg.jit(lambda *a: a[0] * a[1], static_argnums=(1, -1))  # the same argument when there are two
    assert both(2.0, 3, 4) == 6.0
    with pytest.raises(ValueError, match=r"name argument 1 twice in a call with 2 arguments"):
        both(2.0, 3)
    far = fg.jit(lambda *a: a[0], static_argnums=3)
    with pytest.raises(ValueError, match="names argument 3 but the call has 1 positional"):
        far(1.0)
    by_name = fg.jit(lambda x, n=1: x * n, static_argnums=1)
    with pytest.raises(ValueError, match="pass it positionally.*keyword arguments are static anyway"):
        by_name(1.0, n=2)
    missing = fg.jit(lambda x, n: x * n, static_argnums=1)
    with pytest.raises(TypeError, match=r"called with arguments that <lambda> does not take.*'n'"):
        missing(1.0)
    assert fg.jit(lambda x, n: x * n, static_argnums=-1)(2.0, 3) == 6.0


def test_huge_ints_as_traced_leaves_are_a_clear_error() -> None:
    step = fg.jit(lambda p: p["w"] * 2.0)
    with pytest.raises(ValueError, match=r"leaf at \[0\]\['w'\] is an int of 1329 bits, too large for a"):
        step({"w": 10**400})
    assert step({"w": 10**300}) == float(10**300) * 2.0
    shifted = fg.jit(lambda n, x: x * 2.0, static_argnums=0)
    with pytest.raises(ValueError, match=r"leaf at \[1\] is an int"):  # the argument's position
        shifted(3, 10**400)


def test_leaf_errors_name_the_argument_position_when_some_are_static() -> None:
    step = fg.jit(lambda n, p: p["x"] * n, static_argnums=0)
    with pytest.raises(TypeError, match=r"leaf at \[1\]\['x'\] is a str"):
        step(2, {"x": "text"})


# numpy arrays as arguments -------------------------------------------------------------------


def test_an_array_that_vmap_maps_over_is_data_of_the_compiled_code() -> None:
    np = pytest.importorskip("numpy")

    def f(w: Any, xs: Any) -> Any:
        return fg.sum(fg.vmap(lambda w, x: w * x, in_axes=(None, 0))(w, xs))

    step = fg.jit(f)
    for xs in (np.arange(3.0), np.array([0.5, -2.0, 4.0]), np.arange(3.0)):
        for _ in range(2):
            assert exact(step(2.0, xs)) == exact(float(f(2.0, xs)))
    assert step.cache_info().traces == 1  # one path for every array of 3 doubles
    assert step(2.0, np.arange(5.0)) == 20.0 and step.cache_info().traces == 2
    swapped = np.array([0.5, -2.0, 4.0], dtype=">f8")  # another byte order: another path (its dtype differs)
    assert exact(step(2.0, swapped)) == exact(step(2.0, swapped)) == exact(float(f(2.0, swapped)))
    assert step.cache_info().traces == 3
    assert fg.jit(lambda xs: str(xs.dtype))(swapped) == str(swapped.dtype)
    grad = fg.jit(fg.grad(f))
    assert grad(2.0, np.array([0.5, -2.0, 4.0])) == 2.5 and grad(2.0, np.array([1.0, 1.0, 1.0])) == 3.0
    per_example = fg.vmap(lambda w, x: fg.tanh(w * x), in_axes=(None, 0), backend="loop")
    loop = fg.jit(lambda w, xs: per_example(w, xs))
    data = np.array([0.25, -1.0])
    assert exact(loop(0.5, data)) == exact(loop(0.5, data)) == exact(tuple(math.tanh(0.5 * x) for x in data))


def test_an_array_argument_can_be_indexed_measured_and_returned() -> None:
    np = pytest.importorskip("numpy")

    def f(w: Any, xs: Any) -> Any:
        return w * xs[0] + xs[-1] * float(len(xs)) + sum(xs), xs.shape, xs

    step = fg.jit(f)
    a, b = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 8.0])
    for xs in (a, b, a):
        got = step(2.0, xs)
        want = f(2.0, xs)
        assert exact(float(got[0])) == exact(float(want[0])) and got[1] == (3,) and got[2] is xs
    assert step.cache_info().traces == 1
    with pytest.raises(IndexError, match=r"index 3 is out of bounds for argument \[0\], an array of 3"):
        fg.jit(lambda xs: xs[3])(a)


@pytest.mark.parametrize(
    "use, what",
    [
        (lambda xs: xs * 2.0, "arithmetic"),
        (lambda xs: xs[0] if xs else 0.0, "a truth test"),
        (lambda xs: xs[1:], "indexing by a slice"),
        (lambda xs: xs.mean(), r"\.mean does not"),
    ],
)
def test_whole_array_operations_on_an_array_argument_are_refused(use: Any, what: str) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises((TypeError, AttributeError), match=r"argument \[0\] is a numpy array.*" + what):
        fg.jit(use)(np.array([1.0, 2.0]))


def test_numpy_functions_of_an_array_argument_are_refused() -> None:
    np = pytest.importorskip("numpy")
    for use in (np.sum, np.exp, np.asarray, lambda xs: np.dot(xs, xs)):
        with pytest.raises(TypeError, match=r"is a numpy array.*(a numpy function|conversion to a numpy)"):
            fg.jit(use)(np.array([1.0, 2.0]))


def test_arrays_jit_cannot_trace_say_what_to_pass() -> None:
    np = pytest.importorskip("numpy")
    step = fg.jit(lambda w, xs: w)
    with pytest.raises(TypeError, match=r"leaf at \[1\] is a numpy array of shape \(2, 2\).*1-D float64"):
        step(1.0, np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"dtype int64.*astype\(float\)"):
        step(1.0, np.arange(3))
    with pytest.raises(TypeError, match=r"shape \(\).*tolist"):
        step(1.0, np.array(2.0))


def test_under_debug_nans_the_function_gets_the_array_itself() -> None:
    np = pytest.importorskip("numpy")
    step = fg.jit(lambda w, xs: w * float(np.sum(xs)))
    with fg.debug_nans():
        assert step(2.0, np.array([1.0, 2.0])) == 6.0


# 7. Hostile inputs -------------------------------------------------------------------------


class HashRaises:
    def __hash__(self) -> int:
        raise RuntimeError("no hash for you")


class EqRaises:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison")


def test_static_values_whose_hash_or_eq_raise_are_named() -> None:
    step = fg.jit(lambda x, s: x * 2.0, static_argnums=1)
    with pytest.raises(TypeError, match=r"static argument 1 must be hashable.*RuntimeError: no hash for you"):
        step(1.0, HashRaises())
    with pytest.raises(TypeError, match=r"static argument 1 must be hashable.*tuples"):
        step(1.0, (1.0, [2.0]))
    with pytest.raises(TypeError, match=r"keyword argument 'opts' must be hashable"):
        fg.jit(lambda x, opts: x)(1.0, opts=[1])
    first, second = EqRaises(), EqRaises()
    assert step(1.0, first) == 2.0 and step(1.0, first) == 2.0
    with pytest.raises(TypeError, match=r"comparing this call's static arguments.*raised RuntimeError"):
        step(1.0, second)


@dataclasses.dataclass
class Named:
    w: float
    names: Any = fg.static_field(default=None)


def test_an_unhashable_static_field_is_named_with_its_path() -> None:
    step = fg.jit(lambda k, m: m["a"].w * k, static_argnums=0)
    with pytest.raises(TypeError, match=r"the static field 'names' at \[1\]\['a'\] must be hashable"):
        step(2.0, {"a": Named(1.0, ["x"])})
    assert step(2.0, {"a": Named(1.0, ("x",))}) == 2.0


def test_a_lying_hash_costs_traces_but_never_a_wrong_result() -> None:
    class Lying:
        def __init__(self, v: float) -> None:
            self.v = v

        def __hash__(self) -> int:
            return id(object())

    step = fg.jit(lambda x, s: x * s.v, static_argnums=1, cache_size=3)
    for v in (1.0, 2.0, 3.0, 4.0, 5.0):
        assert step(2.0, Lying(v)) == 2.0 * v
    assert step.cache_info().entries == 3


def test_a_node_that_escaped_a_transform_is_refused_as_an_argument() -> None:
    kept: list[Any] = []
    fg.grad(lambda y: kept.append(y) or y)(1.0)
    with pytest.raises(fg.EscapedNodeError, match=r"leaf at \[1\] is a node of grad, which has returned"):
        fg.jit(lambda n, x: x * n, static_argnums=0)(2.0, kept[0])


def test_a_function_that_raises_on_its_second_trace_leaves_the_cache_sound() -> None:
    def f(x: Any) -> Any:
        if x < 0:
            raise ValueError("negative")
        return x * 2.0

    step = fg.jit(f)
    assert step(1.0) == 2.0
    with pytest.raises(ValueError, match="negative"):
        step(-1.0)
    assert step(3.0) == 6.0 and step.cache_info() == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="negative"):
        step(-1.0)


def test_a_cache_of_one_path_alternating_between_paths() -> None:
    def f(x: Any) -> Any:
        return fg.tanh(x) * 2.0 if x > 0 else fg.exp(x) - 1.0

    vg = fg.value_and_grad(f)
    step = fg.jit(vg, cache_size=1)
    xs = [0.5, -0.5, 0.25, -2.0, 1.0, -1.0]
    for x in xs:
        assert exact(step(x)) == exact(vg(x))
    assert step.cache_info() == (6, 0, 6, 1)
    assert exact(step(-1.5)) == exact(vg(-1.5)) and step.cache_info() == (6, 1, 6, 1)  # the last path


def test_threads_tracing_equal_but_different_static_values_get_their_own_paths() -> None:
    def f(x: Any, s: Any) -> Any:
        return fg.div(x, s) * (2.0 if s is True else 1.0)

    step = fg.jit(f, static_argnums=1)
    statics = [0.0, -0.0, 1, True, 1.0, NAN_A, NAN_B, -0.0]
    results: list[Any] = [None] * len(statics)
    start = threading.Barrier(len(statics))

    def work(k: int) -> None:
        start.wait()
        results[k] = [exact(step(-1.0, statics[k])) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(statics))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, got in zip(statics, results):
        assert got == [exact(f(-1.0, s))] * 20, s


def test_a_jitted_function_calling_itself_runs_its_function() -> None:
    def power(x: Any, n: int) -> Any:
        return x if n == 1 else x * step(x, n - 1)

    step = fg.jit(power, static_argnums=1)
    assert step(1.5, 4) == step(1.5, 4) == 1.5**4
    assert step.cache_info().traces == 1


# The strict key itself -----------------------------------------------------------------------

ATOMS = st.sampled_from([0.0, -0.0, 1, True, 1.0, 2, NAN_A, NAN_B, NEG_NAN, "a", None, math.inf])
VALUES = st.recursive(
    ATOMS,
    lambda kids: st.tuples(kids, kids) | st.frozensets(kids, max_size=3) | st.builds(Opts, kids, kids),
    max_leaves=6,
)


def reference(x: Any) -> str:
    """What a function can tell about a value: types, float bits, structure (sets unordered)."""
    if isinstance(x, float):
        return f"float:{struct.pack('<d', x).hex()}"
    if isinstance(x, tuple):
        return f"{type(x).__name__}({','.join(map(reference, x))})"
    if isinstance(x, frozenset):
        return f"set({','.join(sorted(map(reference, x)))})"
    return f"{type(x).__name__}:{x!r}"


@given(VALUES, VALUES)
def test_strict_keys_are_equal_exactly_for_values_a_function_cannot_tell_apart(a: Any, b: Any) -> None:
    ka, kb = strict_key(a), strict_key(b)
    assert (ka == kb) == (reference(a) == reference(b))
    assert ka == strict_key(a) and hash(ka) == hash(strict_key(a))


def test_a_static_argument_of_any_depth_is_keyed_without_recursion() -> None:
    def deep(depth: int) -> Any:
        value: Any = (0.0,)
        for _ in range(depth):
            value = (value, 1.0)
        return value

    step = fg.jit(lambda x, s: x * s[1], static_argnums=1)
    assert step(2.0, deep(100_000)) == 2.0 and step(3.0, deep(100_000)) == 3.0  # another, equal object
    assert step.cache_info().traces == 1


def test_jit_of_grad_takes_pytrees_10000_deep() -> None:
    tree: Any = 1.5
    for _ in range(10_000):
        tree = {"a": [tree]}
    step = fg.jit(fg.value_and_grad(lambda t: fg.tree_leaves(t)[0] * 2.0))
    for _ in range(2):
        value, grads = step(tree)
        assert value == 3.0 and fg.tree_leaves(grads) == [2.0]
    assert step.cache_info().traces == 1


def test_the_same_keyword_objects_as_the_last_call_are_not_hashed_again() -> None:
    class Counted:
        hashes = 0

        def __hash__(self) -> int:
            Counted.hashes += 1
            return 1

    data = Counted()
    step = fg.jit(lambda x, d=None: x * 2.0)  # one float leaf: no compiled flattener to reuse
    for _ in range(5):
        assert step(1.5, d=data) == 3.0
    assert Counted.hashes == 1 and step.cache_info().traces == 1
    assert step(1.5, d=Counted()) == 3.0 and Counted.hashes == 2  # another object: keyed again
