"""grad, value_and_grad, trace: results, structures, nesting, properties, scale."""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import SLOW
from hypothesis import assume, given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap, pvector

import fgrad as fg
from fgrad.testing import check_grads, expressions, floats_in, numerical_grad

N_CHAIN = 1_000_000 if SLOW else 100_000
N_SUM = 100_000

Point = namedtuple("Point", ["x", "y"])


@dataclass(frozen=True)
class Layer:
    w: Any
    b: Any
    activation: str = fg.static_field(default="relu")


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def f_user(p: Any) -> Any:
    return p["w"] * p["x"] + fg.tanh(p["b"])


# First examples ----------------------------------------------------------------


@pytest.mark.parametrize("make", [pmap, dict], ids=["PMap", "dict"])
def test_grad_of_the_user_example_gives_a_pmap(make: Any) -> None:
    grads = fg.grad(f_user)(make({"w": 2.0, "x": 3.0, "b": 0.5}))
    assert isinstance(grads, PMap)
    assert set(grads) == {"w", "x", "b"}
    assert grads["w"] == 3.0 and grads["x"] == 2.0
    assert close(grads["b"], 1.0 - math.tanh(0.5) ** 2, 1e-15)
    assert all(type(v) is float for v in grads.values())


def test_value_and_grad_returns_the_value_and_the_gradient() -> None:
    params = pmap({"w": 2.0, "x": 3.0, "b": 0.5})
    value, grads = fg.value_and_grad(f_user)(params)
    assert type(value) is float
    assert close(value, 6.0 + math.tanh(0.5), 1e-15)
    assert grads == fg.grad(f_user)(params)


def test_the_same_function_runs_on_plain_floats() -> None:
    assert close(f_user({"w": 2.0, "x": 3.0, "b": 0.5}), 6.0 + math.tanh(0.5), 1e-15)


def test_grad_of_cube() -> None:
    assert fg.grad(lambda x: x**3)(2.0) == 12.0
    assert fg.grad(fg.grad(lambda x: x**3))(2.0) == 12.0


def nested(f: Any, k: int) -> Any:
    for _ in range(k):
        f = fg.grad(f)
    return f


@pytest.mark.parametrize("k, expected", [(1, 80.0), (2, 160.0), (3, 240.0), (4, 240.0), (5, 120.0), (6, 0.0)])
def test_nested_grad_of_x_to_the_fifth(k: int, expected: float) -> None:
    assert nested(lambda x: x**5, k)(2.0) == expected


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_nested_grad_of_transcendental_functions(k: int) -> None:
    x = 0.7
    sin_derivs = [math.sin(x), math.cos(x), -math.sin(x), -math.cos(x), math.sin(x)]
    assert close(nested(fg.sin, k)(x), sin_derivs[k], 1e-12)
    assert close(nested(fg.exp, k)(x), math.exp(x), 1e-12)
    assert close(nested(lambda a: a * fg.exp(a), k)(x), (x + k) * math.exp(x), 1e-12)


def test_nested_grad_of_a_node_exponent() -> None:
    # d/dx x^x = x^x (1 + ln x); d2 = x^x ((1 + ln x)^2 + 1/x)
    x = 1.5
    assert close(fg.grad(lambda a: a**a)(x), x**x * (1 + math.log(x)), 1e-12)
    assert close(fg.grad(fg.grad(lambda a: a**a))(x), x**x * ((1 + math.log(x)) ** 2 + 1 / x), 1e-12)


def test_argnums_tuple_gives_a_tuple() -> None:
    def loss(a: Any, b: Any) -> Any:
        return a * a * b

    g = fg.grad(loss, argnums=(0, 1))(2.0, 3.0)
    assert type(g) is tuple and g == (12.0, 4.0)
    assert fg.grad(loss, argnums=1)(2.0, 3.0) == 4.0
    assert fg.grad(loss, argnums=(1,))(2.0, 3.0) == (4.0,)
    assert fg.grad(loss, argnums=(1, 0))(2.0, 3.0) == (4.0, 12.0)
    assert fg.grad(loss, argnums=-1)(2.0, 3.0) == 4.0


def test_argnums_over_pytrees() -> None:
    def loss(params: Any, batch: Any) -> Any:
        return fg.sum([params["w"] * x for x in batch])

    gp, gb = fg.grad(loss, argnums=(0, 1))({"w": 2.0}, [1.0, 3.0])
    assert gp == pmap({"w": 4.0}) and isinstance(gb, PVector) and list(gb) == [2.0, 2.0]


def test_has_aux_gives_grads_and_aux_as_floats() -> None:
    def loss(p: Any, batch: Any) -> Any:
        out = p["w"] * batch
        return out * out, {"pred": out, "parts": [p["w"], out * 2.0], "name": "mse", "n": 3}

    grads, aux = fg.grad(loss, has_aux=True)({"w": 2.0}, 3.0)
    assert grads == pmap({"w": 2 * 6.0 * 3.0})
    assert type(aux["pred"]) is float and aux["pred"] == 6.0
    assert [type(v) for v in aux["parts"]] == [float, float] and list(aux["parts"]) == [2.0, 12.0]
    assert aux["name"] == "mse" and aux["n"] == 3


def test_value_and_grad_with_aux() -> None:
    (value, aux), grads = fg.value_and_grad(lambda x: (x * x, x + 1.0), has_aux=True)(3.0)
    assert value == 9.0 and aux == 4.0 and grads == 6.0
    assert type(aux) is float


def test_aux_of_an_inner_grad_stays_differentiable_by_the_outer_one() -> None:
    def outer(x: Any) -> Any:
        _, aux = fg.grad(lambda y: (x * y, x * x), has_aux=True)(1.0)
        return aux

    assert fg.grad(outer)(3.0) == 6.0


# Gradient structure ------------------------------------------------------------------


def total(tree: Any) -> Any:
    return fg.sum([(i + 1.0) * leaf for i, leaf in enumerate(fg.tree_leaves(tree))])


@pytest.mark.parametrize(
    "params, check",
    [
        ([1.0, 2.0], lambda g: isinstance(g, PVector) and list(g) == [1.0, 2.0]),
        (pvector([1.0, 2.0]), lambda g: isinstance(g, PVector) and list(g) == [1.0, 2.0]),
        ((1.0, 2.0), lambda g: type(g) is tuple and g == (1.0, 2.0)),
        (Point(1.0, 2.0), lambda g: type(g) is Point and g == Point(1.0, 2.0)),
        ({"b": 1.0, "a": 2.0}, lambda g: isinstance(g, PMap) and dict(g) == {"a": 1.0, "b": 2.0}),
        (5.0, lambda g: type(g) is float and g == 1.0),
        (5, lambda g: type(g) is float and g == 1.0),
        ((None, 1.0), lambda g: g == (None, 1.0)),
        (
            Layer(w=[1.0, 2.0], b=0.0, activation="tanh"),
            lambda g: (
                type(g) is Layer
                and g.activation == "tanh"
                and isinstance(g.w, PVector)
                and list(g.w) == [1.0, 2.0]
                and g.b == 3.0
            ),
        ),
        (
            {"layers": [{"w": [1.0], "b": 2.0}], "p": Point(1.0, (2.0,))},
            lambda g: (
                isinstance(g, PMap)
                and isinstance(g["layers"], PVector)
                and isinstance(g["layers"][0], PMap)
                and isinstance(g["layers"][0]["w"], PVector)
                and type(g["p"]) is Point
                and type(g["p"].y) is tuple
                and fg.tree_leaves(g) == [1.0, 2.0, 3.0, 4.0]
            ),
        ),
    ],
    ids=["list", "PVector", "tuple", "namedtuple", "dict", "float", "int", "None", "dataclass", "nested"],
)
def test_gradient_structure_follows_the_input_made_persistent(params: Any, check: Any) -> None:
    assert check(fg.grad(total)(params))


def persistent(t: Any) -> Any:
    """The structure fgrad should give back: dicts -> PMap, lists -> PVector."""
    if isinstance(t, (dict, PMap)):
        return pmap({k: persistent(v) for k, v in t.items()})
    if isinstance(t, (list, PVector)):
        return pvector([persistent(v) for v in t])
    if isinstance(t, tuple) and hasattr(type(t), "_fields"):
        return type(t)(*[persistent(v) for v in t])
    if isinstance(t, tuple):
        return tuple(persistent(v) for v in t)
    if dataclasses.is_dataclass(t):
        return dataclasses.replace(t, w=persistent(t.w), b=persistent(t.b))
    return t


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, PMap)):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, PVector)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def _containers(children: Any) -> Any:
    few = st.lists(children, max_size=3)
    keys = st.text(alphabet="abxyz", min_size=1, max_size=2)
    return st.one_of(
        few,
        few.map(tuple),
        few.map(pvector),
        st.dictionaries(keys, children, max_size=3),
        st.dictionaries(keys, children, max_size=3).map(pmap),
        st.builds(Point, children, children),
        st.builds(Layer, children, children, st.sampled_from(["relu", "tanh"])),
    )


param_trees = st.recursive(
    st.one_of(st.none(), floats_in(-10.0, 10.0), st.integers(-10, 10)), _containers, max_leaves=10
)


@given(param_trees)
def test_gradient_structure_property(params: Any) -> None:
    before = copy.deepcopy(params)
    grads = fg.grad(total)(params)
    leaves, td = fg.tree_flatten(persistent(params))
    expected = fg.tree_unflatten(td, [float(i + 1) for i in range(len(leaves))])
    assert same(grads, expected)
    assert all(type(g) is float for g in fg.tree_leaves(grads))
    assert same(params, before)  # the input is untouched


def test_int_leaves_are_differentiated_as_floats() -> None:
    g = fg.grad(lambda x: x * x)(3)
    assert type(g) is float and g == 6.0
    grads = fg.grad(lambda p: p["a"] * p["b"])({"a": 2, "b": 5})
    assert dict(grads) == {"a": 5.0, "b": 2.0} and all(type(v) is float for v in grads.values())
    # Inside the function the input is a node holding a float.
    _, aux = fg.grad(lambda x: (x * 1.0, x), has_aux=True)(3)
    assert type(aux) is float and aux == 3.0


@pytest.mark.parametrize(
    "f",
    [lambda p: 1.0, lambda p: 7, lambda p: fg.exp(2.0), lambda p: fg.stop_gradient(p[0] * p[1])],
    ids=["float", "int", "op on constants", "stop_gradient"],
)
def test_output_not_depending_on_the_inputs_gives_zero_gradients(f: Any) -> None:
    g = fg.grad(f)([1.0, 2.0])
    assert isinstance(g, PVector) and list(g) == [0.0, 0.0]
    assert all(type(v) is float for v in g)


def test_unused_leaves_get_zero_gradients() -> None:
    g = fg.grad(lambda p: p["a"] * 2.0)({"a": 1.0, "b": 2.0, "c": [3.0]})
    assert g["a"] == 2.0 and g["b"] == 0.0 and list(g["c"]) == [0.0]


def test_value_and_grad_of_a_constant_function_returns_a_float_value() -> None:
    value, g = fg.value_and_grad(lambda x: 3)(1.0)
    assert type(value) is float and value == 3.0 and g == 0.0


def test_identity_has_gradient_one() -> None:
    assert fg.grad(lambda x: x)(4.0) == 1.0


def test_kwargs_are_constants() -> None:
    def loss(x: Any, scale: float = 1.0, name: str = "", data: Any = None) -> Any:
        return x * scale * fg.sum(data or [1.0])

    assert fg.grad(loss)(2.0, scale=5.0, name="anything", data={"not": "a tree of floats"}.get("x")) == 5.0
    assert fg.grad(loss)(2.0, scale=5.0, data=[1.0, 2.0]) == 15.0
    assert fg.grad(loss, argnums=(0,))(2.0, scale=3.0) == (3.0,)


def test_non_differentiated_positional_arguments_are_constants_of_any_type() -> None:
    def loss(w: Any, batch: Any, label: str) -> Any:
        return w * batch["x"] if label == "ok" else w

    assert fg.grad(loss)(2.0, {"x": 3.0, "meta": object()}, "ok") == 3.0


# Nesting and perturbation confusion ----------------------------------------------------


def test_perturbation_confusion_regression() -> None:
    # d/dx [ x * d/dy (x + y) ] at x = y = 1 is 1; a confused implementation gives 2.
    def f(x: Any) -> Any:
        return x * fg.grad(lambda y: x + y)(1.0)

    assert fg.grad(f)(1.0) == 1.0


def test_grad_of_grad_where_the_inner_function_closes_over_the_outer_variable() -> None:
    # d/dx [ d/dy (x * y * y) at y = 2 ] = d/dx [4x] = 4
    assert fg.grad(lambda x: fg.grad(lambda y: x * y * y)(2.0))(3.0) == 4.0
    # d/dx [ x * d/dy (x * y) ] = d/dx x^2 = 2x
    assert fg.grad(lambda x: x * fg.grad(lambda y: x * y)(2.0))(3.0) == 6.0
    # the inner output does not depend on y at all
    assert fg.grad(lambda x: fg.grad(lambda y: x * x)(2.0))(3.0) == 0.0
    # d/dx [ d/dy exp(x y) at y = 1 ] = d/dx [x e^x] = (1 + x) e^x
    assert close(fg.grad(lambda x: fg.grad(lambda y: fg.exp(x * y))(1.0))(0.5), 1.5 * math.exp(0.5), 1e-12)


def test_inner_grad_of_a_pytree_that_contains_outer_nodes() -> None:
    # d/dp [ d/dq (q["a"] * p) at q["a"] = p ] = d/dp p = 1
    def outer(p: Any) -> Any:
        return fg.grad(lambda q: q["a"] * p)({"a": p})["a"]

    assert fg.grad(outer)(3.0) == 1.0


def test_three_levels_with_cross_dependencies() -> None:
    # h(x) = d/dy [ d/dz (x*y*z*z) at z=1 ] at y=1 = 2x ; h'(x) = 2
    def h(x: Any) -> Any:
        return fg.grad(lambda y: fg.grad(lambda z: x * y * z * z)(1.0))(1.0)

    assert h(5.0) == 10.0
    assert fg.grad(h)(5.0) == 2.0


def test_an_exception_inside_the_function_closes_its_trace() -> None:
    saved = []

    def boom(x: Any) -> Any:
        saved.append(x * 2.0)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fg.grad(boom)(1.0)
    with pytest.raises(RuntimeError, match="boom"):
        fg.grad(lambda x: fg.grad(boom)(x))(1.0)
    # Nothing is left active: new traces start at level 1 again and work.
    assert fg.trace(lambda x: x * 2.0)(1.0).trace.level == 1
    assert fg.grad(fg.grad(lambda x: x**3))(2.0) == 12.0
    with pytest.raises(fg.EscapedNodeError):
        saved[0] + 1.0


# Micrograd's README example --------------------------------------------------------


def micrograd_example(a: Any, b: Any) -> Any:
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + fg.relu(b + a))
    d = d + (3 * d + fg.relu(b - a))
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g


def test_micrograd_readme_example() -> None:
    assert abs(micrograd_example(-4.0, 2.0) - 24.7041) < 1e-4
    value, (da, db) = fg.value_and_grad(micrograd_example, argnums=(0, 1))(-4.0, 2.0)
    assert close(value, 24.70408163265306, 1e-12)
    assert close(da, 138.83381924198252, 1e-12)
    assert close(db, 645.5772594752187, 1e-12)
    assert (round(value, 4), round(da, 4), round(db, 4)) == (24.7041, 138.8338, 645.5773)


# Properties ---------------------------------------------------------------------------

inputs = floats_in(-2.0, 2.0)
coefficients = floats_in(-3.0, 3.0)


def finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


@given(f=expressions(), g=expressions(), a=coefficients, b=coefficients, x0=inputs, x1=inputs)
def test_grad_is_linear(f: Any, g: Any, a: float, b: float, x0: float, x1: float) -> None:
    gf = fg.grad(f, argnums=(0, 1))(x0, x1)
    gg = fg.grad(g, argnums=(0, 1))(x0, x1)
    assume(finite(*gf, *gg, f(x0, x1), g(x0, x1)))
    gh = fg.grad(lambda u, v: a * f(u, v) + b * g(u, v), argnums=(0, 1))(x0, x1)
    for h_i, f_i, g_i in zip(gh, gf, gg, strict=True):
        scale = abs(a * f_i) + abs(b * g_i) + 1.0
        assert abs(h_i - (a * f_i + b * g_i)) <= 1e-9 * scale


@given(f=expressions(), x0=inputs, x1=inputs)
def test_grad_of_random_expressions_agrees_with_numerical_grad(f: Any, x0: float, x1: float) -> None:
    value = f(x0, x1)
    assume(math.isfinite(value) and abs(value) < 1e6)
    analytic = fg.grad(f, argnums=(0, 1))(x0, x1)
    numeric = numerical_grad(lambda p: f(*p), (x0, x1))
    assume(finite(*analytic) and max(abs(a) for a in analytic) < 1e6)
    for a, n in zip(analytic, numeric, strict=True):
        assert abs(a - n) <= 1e-5 + 1e-4 * max(abs(a), abs(n)), (f, a, n)


@given(f=expressions(max_steps=5), x0=inputs, x1=inputs)
def test_second_derivatives_of_random_expressions_agree_with_numerical_ones(
    f: Any, x0: float, x1: float
) -> None:
    value = f(x0, x1)
    assume(math.isfinite(value) and abs(value) < 1e4)
    assume(all(abs(g) < 1e4 for g in fg.grad(f, argnums=(0, 1))(x0, x1)))
    check_grads(f, (x0, x1), order=2, modes=("rev", "fwd"), atol=1e-4, rtol=1e-3)


@given(f=expressions(), x0=inputs, x1=inputs)
def test_random_expressions_give_the_same_value_on_floats_and_traced(f: Any, x0: float, x1: float) -> None:
    out = fg.trace(f)(x0, x1)
    plain = f(x0, x1)
    traced = out.value if isinstance(out, fg.Expr) else out
    assert traced == plain or (math.isnan(traced) and math.isnan(plain))


def test_dict_and_list_inputs_are_not_mutated() -> None:
    inner = [1.0, 2.0]
    params = {"w": inner, "b": 0.5}
    batch = [3.0, 4.0]
    snapshot = copy.deepcopy((params, batch))

    def loss(p: Any, xs: Any) -> Any:
        return fg.sum([w * x for w, x in zip(p["w"], xs, strict=True)]) + p["b"]

    grads = fg.grad(loss, argnums=(0, 1))(params, batch)
    assert (params, batch) == snapshot
    assert params["w"] is inner
    assert all(type(v) is float for v in [*inner, params["b"], *batch])
    assert list(grads[0]["w"]) == [3.0, 4.0] and list(grads[1]) == [1.0, 2.0]


# Python semantics on nodes ---------------------------------------------------------------


def test_builtin_sum_over_nodes() -> None:
    assert fg.grad(lambda xs: sum(x * x for x in xs))([1.0, 2.0, 3.0]) == pvector([2.0, 4.0, 6.0])
    assert fg.grad(lambda xs: sum(xs, 10.0))([1.0, 2.0]) == pvector([1.0, 1.0])


def test_comparisons_on_nodes_return_plain_bools() -> None:
    results = fg.trace(
        lambda x, y: [
            x < y,
            x <= y,
            x > y,
            x >= y,
            x == y,
            x != y,
            x < 3,
            3 > x,
            x == 2,
            2.0 == x,
            x < x * 2.0,
        ]
    )(2.0, 3.0)
    assert results == [True, True, False, False, False, True, True, True, True, True, True]
    assert all(type(r) is bool for r in results)


def test_if_and_while_on_nodes() -> None:
    def f(x: Any) -> Any:
        if x > 0:
            y = x * x
        else:
            y = -x
        while y < 100.0:
            y = y * 2.0
        return y

    # x = 3: y = 9 -> 18 -> 36 -> 72 -> 144, so f = 16 x^2 and f' = 32 x.
    assert fg.grad(f)(3.0) == 96.0
    assert fg.grad(f)(-1.0) == -128.0  # y = -x doubled 7 times
    assert fg.grad(lambda x: x * 2.0 if x else x * 3.0)(0.0) == 3.0
    assert fg.grad(lambda x: x * 2.0 if x else x * 3.0)(1.0) == 2.0


def test_nodes_are_unhashable() -> None:
    out = fg.trace(lambda x: x * 2.0)(1.0)
    with pytest.raises(TypeError):
        hash(out)
    with pytest.raises(TypeError):
        {out}  # noqa: B018
    with pytest.raises(TypeError):
        {out: 1}  # noqa: B018


def test_float_of_a_closed_node_is_its_value() -> None:
    assert fg.grad(lambda x: x * fg.value_of(x))(3.0) == 3.0  # float(x) there is refused
    out = fg.trace(lambda x: x * 2.0)(1.5)
    assert float(out) == 3.0 and int(out) == 3


def test_trace_returns_nodes_in_the_output_structure() -> None:
    out = fg.trace(lambda x, y: {"s": x * y, "l": [x, 2.0]})(2.0, 3.0)
    assert isinstance(out["s"], fg.Expr) and out["s"].value == 6.0 and out["s"].prim.name == "mul"
    assert isinstance(out["l"][0], fg.Expr) and out["l"][0].prim is None and out["l"][0].value == 2.0
    assert out["l"][1] == 2.0


def test_count_nodes_counts_shared_subexpressions_once() -> None:
    def shared(x: Any) -> Any:
        y = x * x
        return y + y

    assert fg.count_nodes(fg.trace(shared)(3.0)) == 3
    assert fg.count_nodes(fg.trace(lambda x: x * x + x * x)(3.0)) == 4
    # a tree of outputs that share nodes counts them once too
    assert fg.count_nodes(fg.trace(lambda x: [x * x, (x * x, x)])(3.0)) == 3
    assert fg.count_nodes(fg.trace(lambda x, y: x)(1.0, 2.0)) == 1


def test_diamond_graphs_are_linear_not_exponential() -> None:
    def doubling(x: Any) -> Any:
        for _ in range(200):
            x = x + x
        return x

    assert fg.count_nodes(fg.trace(doubling)(1.0)) == 201
    assert fg.grad(lambda x: doubling(x) * 2.0**-200)(1.0) == 1.0
    assert fg.grad(fg.grad(lambda x: doubling(x * x) * 2.0**-200))(3.0) == 2.0


# Scale: no recursion anywhere ---------------------------------------------------------------


def test_long_chain_of_operations() -> None:
    c = 1.0 + 1.0 / N_CHAIN

    def chain(x: Any) -> Any:
        for _ in range(N_CHAIN):
            x = x * c
        return x

    value, g = fg.value_and_grad(chain)(2.0)
    assert close(g, c**N_CHAIN, 1e-8)
    assert close(value, 2.0 * c**N_CHAIN, 1e-8)


def test_long_chain_of_mixed_operations() -> None:
    def chain(x: Any) -> Any:
        for _ in range(N_CHAIN // 2):
            x = fg.log(fg.exp(x))  # the identity, two primitives at a time
        return x

    value, g = fg.value_and_grad(chain)(0.5)
    assert close(value, 0.5, 1e-9)
    assert close(g, 1.0, 1e-9)
    assert close(chain(0.5), value, 1e-15)


def test_grad_of_grad_over_a_long_chain() -> None:
    n = N_CHAIN // 10

    def f(x: Any) -> Any:
        y = x
        for _ in range(n):
            y = y + 1.0
        return y * x  # (x + n) x, so f'' = 2

    assert fg.grad(fg.grad(f))(2.0) == 2.0


def test_builtin_sum_over_many_terms() -> None:
    xs = [float(i % 7) for i in range(N_SUM)]
    grads = fg.grad(lambda v: sum(x * x for x in v))(xs)
    assert isinstance(grads, PVector) and len(grads) == N_SUM
    assert list(grads) == [2.0 * x for x in xs]


def test_fg_sum_over_many_terms() -> None:
    xs = [float(i % 7) for i in range(N_SUM)]
    grads = fg.grad(lambda v: fg.sum([x * x for x in v]))(xs)
    assert list(grads) == [2.0 * x for x in xs]


def test_count_nodes_and_repr_on_a_deep_chain() -> None:
    def chain(x: Any) -> Any:
        for _ in range(N_CHAIN):
            x = x + 1.0
        return x

    out = fg.trace(chain)(0.0)
    assert fg.count_nodes(out) == N_CHAIN + 1
    text = repr(out)
    assert len(text) < 200 and "add" in text
    del out
    gc.collect()  # freeing the chain must not recurse either


def test_check_grads_checks_both_modes_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from fgrad import testing

    calls: list[str] = []
    for mode in ("fwd", "rev"):
        real = getattr(testing, f"_check_{mode}")

        def spy(*args: Any, real: Any = real, mode: str = mode) -> None:
            calls.append(mode)
            real(*args)

        monkeypatch.setattr(testing, f"_check_{mode}", spy)
    check_grads(lambda x: fg.sin(x) * x, (0.5,), order=2)
    assert sorted(set(calls)) == ["fwd", "rev"] and len(calls) == 4  # as JAX's check_grads
