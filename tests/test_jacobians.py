"""jacobian (jacrev), jacfwd, hessian: values, nested persistent structures, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap

import fgrad as fg
from fgrad.testing import expressions, floats_in


def close(a: float, b: float, tol: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def same(a: float, b: float, tol: float = 1e-9) -> bool:
    """Close, or both nan, or the same infinity."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# hessian --------------------------------------------------------------------------------


def test_hessian_of_a_dict_is_a_nested_pmap_of_second_derivatives() -> None:
    def f(p: Any) -> Any:
        return p["w"] ** 2 * p["b"] + fg.sin(p["b"]) * p["w"] + fg.exp(p["b"])

    params = {"w": 0.5, "b": -1.0}
    h = fg.hessian(f)(params)
    assert isinstance(h, PMap) and all(isinstance(row, PMap) for row in h.values())
    assert set(h) == {"w", "b"} and all(set(row) == {"w", "b"} for row in h.values())
    w, b = 0.5, -1.0
    assert close(h["w"]["w"], 2.0 * b)
    assert close(h["w"]["b"], 2.0 * w + math.cos(b))  # d2f / dw db
    assert close(h["b"]["w"], 2.0 * w + math.cos(b))
    assert close(h["b"]["b"], -math.sin(b) * w + math.exp(b))


def test_hessian_of_a_pmap_with_nested_containers() -> None:
    def f(p: Any) -> Any:
        return p["layer"]["w"][0] * p["layer"]["w"][1] * p["scale"]

    h = fg.hessian(f)(pmap({"layer": {"w": [2.0, 3.0]}, "scale": 5.0}))
    assert isinstance(h["layer"]["w"], PVector)
    # Outside: the row (d/d layer.w[0]); inside: the column, in the params' structure.
    assert h["layer"]["w"][0]["layer"]["w"][1] == 5.0
    assert h["layer"]["w"][0]["scale"] == 3.0
    assert h["scale"]["scale"] == 0.0
    assert h["scale"]["layer"]["w"][1] == 2.0


def test_hessian_of_several_arguments_is_a_tuple_of_tuples() -> None:
    h = fg.hessian(lambda x, y: x * x * y, argnums=(0, 1))(1.0, 2.0)
    assert h == ((4.0, 2.0), (2.0, 0.0))


@st.composite
def quadratic_forms(draw: Any) -> tuple[list[list[float]], list[float], list[float]]:
    n = draw(st.integers(min_value=1, max_value=4))
    entries = floats_in(-10.0, 10.0)
    a = [[draw(entries) for _ in range(n)] for _ in range(n)]
    b = [draw(entries) for _ in range(n)]
    x = [draw(entries) for _ in range(n)]
    return a, b, x


@given(quadratic_forms())
def test_hessian_of_a_quadratic_form_is_the_symmetric_part(form: Any) -> None:
    a, b, x = form
    n = len(b)

    def f(xs: Any) -> Any:
        quad = fg.sum([xs[i] * a[i][j] * xs[j] for i in range(n) for j in range(n)])
        return 0.5 * quad + fg.dot(b, xs)

    h = fg.hessian(f)(x)
    assert isinstance(h, PVector) and len(h) == n
    for i in range(n):
        for j in range(n):
            assert math.isclose(h[i][j], (a[i][j] + a[j][i]) / 2, rel_tol=1e-12, abs_tol=1e-12)
    g = fg.grad(f)(x)
    for i in range(n):
        want = sum((a[i][j] + a[j][i]) / 2 * x[j] for j in range(n)) + b[i]
        assert math.isclose(g[i], want, rel_tol=1e-9, abs_tol=1e-9)


def test_hessian_agrees_with_nested_grad() -> None:
    def f(p: Any) -> Any:
        return fg.tanh(p[0] * p[1]) + p[1] ** 3 * fg.sigmoid(p[0])

    x = [0.3, -0.8]
    h = fg.hessian(f)(x)
    for i in range(2):
        for j in range(2):
            dij = fg.grad(lambda q, i=i, j=j: fg.grad(f)(q)[i])(x)[j]
            assert close(h[i][j], dij)


# jacobian ---------------------------------------------------------------------------------


def g_tree(p: Any) -> Any:
    return {"y": fg.tanh(p["w"] * 3.0 + p["b"]), "z": [p["w"] * p["b"], p["b"]]}


@pytest.mark.parametrize("jac", [fg.jacobian, fg.jacrev, fg.jacfwd])
def test_jacobian_has_the_output_outside_and_the_params_inside(jac: Any) -> None:
    params = pmap({"w": 0.5, "b": -1.0})
    j = jac(g_tree)(params)
    assert isinstance(j, PMap) and set(j) == {"y", "z"}
    assert isinstance(j["z"], PVector) and len(j["z"]) == 2
    assert all(isinstance(row, PMap) and set(row) == {"w", "b"} for row in (j["y"], *j["z"]))
    t = math.tanh(0.5)
    assert close(j["y"]["w"], 3.0 * (1 - t * t)) and close(j["y"]["b"], 1 - t * t)
    assert j["z"][0] == pmap({"w": -1.0, "b": 0.5})
    assert j["z"][1] == pmap({"w": 0.0, "b": 1.0})


def test_jacobian_is_jacrev() -> None:
    assert fg.jacobian is fg.jacrev


def test_jacobian_of_several_arguments() -> None:
    assert fg.jacrev(lambda x, y: (x * y, x + y), argnums=(0, 1))(2.0, 3.0) == ((3.0, 2.0), (1.0, 1.0))
    assert fg.jacfwd(lambda x, y: (x * y, x + y), argnums=(0, 1))(2.0, 3.0) == ((3.0, 2.0), (1.0, 1.0))
    assert fg.jacfwd(lambda x, y: [x * y], argnums=1)(2.0, 3.0) == [2.0]


def test_jacobian_of_a_scalar_function_is_its_gradient() -> None:
    def f(p: Any) -> Any:
        return p["w"] * fg.exp(p["b"])

    params = {"w": 2.0, "b": 0.5}
    assert fg.jacrev(f)(params) == fg.grad(f)(params)
    for k in ("w", "b"):
        assert close(fg.jacfwd(f)(params)[k], fg.grad(f)(params)[k])


def test_jacobian_of_a_constant_output_is_zero() -> None:
    assert fg.jacrev(lambda x: [x, 2.0])(1.0) == [1.0, 0.0]
    assert fg.jacfwd(lambda x: [x, 2.0])(1.0) == [1.0, 0.0]


@st.composite
def vector_functions(draw: Any) -> Any:
    fs = draw(st.lists(expressions(n_inputs=3, max_steps=6), min_size=2, max_size=3))
    return lambda xs: [f(*xs) for f in fs]


@given(vector_functions(), st.lists(floats_in(-2.0, 2.0), min_size=3, max_size=3))
def test_jacfwd_equals_jacrev_on_random_functions(g: Any, xs: list[float]) -> None:
    fwd = fg.jacfwd(g)(xs)
    rev = fg.jacrev(g)(xs)
    assert isinstance(fwd, PVector) and isinstance(rev, PVector) and len(fwd) == len(rev)
    for row_f, row_r in zip(fwd, rev):
        assert isinstance(row_f, PVector) and len(row_f) == len(row_r) == 3
        for a, b in zip(row_f, row_r):
            assume(math.isfinite(a) or math.isfinite(b))
            assert same(a, b), (a, b)


# errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("jac", [fg.jacrev, fg.jacfwd])
def test_jacobian_of_an_output_leaf_that_is_not_a_number_names_it(jac: Any) -> None:
    with pytest.raises(TypeError, match=r"output at \['s'\] is a str, not a scalar"):
        jac(lambda x: {"a": x, "s": "hi"})(1.0)


def test_hessian_of_a_non_scalar_output_says_what_to_do() -> None:
    with pytest.raises(TypeError, match="needs a scalar output.*str"):
        fg.hessian(lambda x: "hi")(1.0)
    with pytest.raises(TypeError, match="needs a scalar output, got a list of 2.*fg.sum"):
        fg.hessian(lambda x: [x, x])(1.0)


@pytest.mark.parametrize("transform", [fg.jacrev, fg.jacfwd, fg.hessian])
def test_jacobian_of_an_input_leaf_that_is_not_a_number_names_it(transform: Any) -> None:
    with pytest.raises(TypeError, match=r"input at argument 0\['s'\] is a str"):
        transform(lambda p: p["a"] * p["a"])({"a": 1.0, "s": "hi"})


def test_jacobian_argnums_out_of_range() -> None:
    with pytest.raises(ValueError, match="argnums"):
        fg.jacfwd(lambda x: x, argnums=2)(1.0)
