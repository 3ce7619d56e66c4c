"""derivatives(f, order): Taylor mode against known series and nested grad."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given

import fgrad as fg
from fgrad.testing import expressions, floats_in


def nested_grad(f: Any, k: int) -> Any:
    for _ in range(k):
        f = fg.grad(f)
    return f


def agree(got: list[float], want: list[float], tol: float = 1e-9) -> bool:
    return len(got) == len(want) and all(
        math.isclose(a, b, rel_tol=tol, abs_tol=tol) for a, b in zip(got, want)
    )


@pytest.mark.parametrize("x", [-1.5, 0.0, 0.3, 2.0])
def test_every_derivative_of_exp_is_exp(x: float) -> None:
    ds = fg.derivatives(fg.exp, order=8)(x)
    assert len(ds) == 9
    assert agree(ds, [math.exp(x)] * 9, 1e-13)


@pytest.mark.parametrize("x", [-1.0, 0.0, 0.7, 3.0])
def test_derivatives_of_sin_and_cos_cycle(x: float) -> None:
    cycle = [math.sin(x), math.cos(x), -math.sin(x), -math.cos(x)]
    assert agree(fg.derivatives(fg.sin, order=8)(x), [cycle[k % 4] for k in range(9)], 1e-13)
    assert agree(fg.derivatives(fg.cos, order=8)(x), [cycle[(k + 1) % 4] for k in range(9)], 1e-13)


@pytest.mark.parametrize("x", [-1.2, 0.0, 0.3, 1.0])
def test_derivatives_of_tanh_match_nested_grad_to_order_8(x: float) -> None:
    ds = fg.derivatives(fg.tanh, order=8)(x)
    assert agree(ds, [nested_grad(fg.tanh, k)(x) for k in range(9)])


def test_derivatives_of_polynomials_are_exact() -> None:
    assert fg.derivatives(lambda x: x**3, order=4)(2.0) == [8.0, 12.0, 12.0, 6.0, 0.0]
    assert fg.derivatives(lambda x: 3.0 * x * x - x + 1.0, order=3)(1.0) == [3.0, 5.0, 6.0, 0.0]


def test_order_zero_and_constant_and_identity_functions() -> None:
    assert fg.derivatives(fg.sin, order=0)(0.5) == [math.sin(0.5)]
    assert fg.derivatives(lambda x: 3.0, order=2)(0.5) == [3.0, 0.0, 0.0]
    assert fg.derivatives(lambda x: x, order=3)(0.5) == [0.5, 1.0, 0.0, 0.0]
    assert fg.derivatives(lambda x: x, order=1)(2) == [2.0, 1.0]


def h(x: Any) -> Any:
    return fg.tanh(fg.sin(x)) * fg.exp(x)


def test_the_tenth_derivative_of_tanh_sin_times_exp() -> None:
    ds = fg.derivatives(h, order=10)(0.3)
    assert len(ds) == 11 and all(type(d) is float and math.isfinite(d) for d in ds)
    assert agree(ds[:7], [nested_grad(h, k)(0.3) for k in range(7)], 1e-10)
    # Order 10 against a central difference of the 8th derivative (Taylor mode itself).
    d8 = fg.derivatives(h, order=8)
    eps = 1e-3
    approx10 = (d8(0.3 + eps)[8] - 2 * d8(0.3)[8] + d8(0.3 - eps)[8]) / eps**2
    assert math.isclose(ds[10], approx10, rel_tol=1e-4)


def test_every_primitive_has_a_taylor_rule_that_matches_nested_grad() -> None:
    def f(x: Any) -> Any:
        return (
            fg.relu(x)
            + abs(x)
            + fg.maximum(x, 0.2)
            + fg.minimum(2.0 * x, x * x)
            + fg.sqrt(x)
            + x**2.5
            + fg.power(x, -2)
            + fg.log(x)
            + fg.sigmoid(x)
            + fg.cos(x)
            + x / (x + 1.0)
            + x**x
            + 2.0**x
            + fg.dot([x, x], [x, 2.0], bias=x)
            + fg.sum([x, x * x, 1.0])
            - x
            + fg.stop_gradient(x) * fg.tanh(-x)
        )

    for x in (0.3, 0.9):
        assert agree(fg.derivatives(f, order=5)(x), [nested_grad(f, k)(x) for k in range(6)])


def test_taylor_mode_at_kinks_follows_the_conventions() -> None:
    assert fg.derivatives(fg.relu, order=2)(0.0) == [0.0, 0.0, 0.0]
    assert fg.derivatives(fg.abs, order=2)(0.0) == [0.0, 0.0, 0.0]
    assert fg.derivatives(lambda x: fg.maximum(x, 1.0), order=2)(1.0) == [1.0, 0.5, 0.0]
    assert fg.derivatives(fg.sqrt, order=1)(0.0) == [0.0, math.inf]


@given(expressions(n_inputs=1, max_steps=6), floats_in(-1.5, 1.5))
def test_derivatives_match_nested_grad_on_random_functions(f: Any, x: float) -> None:
    ds = fg.derivatives(f, order=3)(x)
    want = [nested_grad(f, k)(x) for k in range(4)]
    assume(all(math.isfinite(w) and abs(w) < 1e12 for w in want))
    assert agree(ds, want, 1e-7), (ds, want)


softplus = fg.Primitive(
    "softplus",
    impl=lambda x: math.log1p(math.exp(x)),
    vjp=lambda g, out, x: (g * fg.sigmoid(x),),
    jvp=lambda dxs, out, x: dxs[0] * fg.sigmoid(x),
)


def test_a_user_primitive_without_a_taylor_rule_works_by_composition() -> None:
    def f(x: Any) -> Any:
        return softplus(fg.sin(x)) * x

    assert agree(fg.derivatives(f, order=5)(0.3), [nested_grad(f, k)(0.3) for k in range(6)], 1e-12)
    assert agree(fg.derivatives(softplus, order=4)(0.0), [math.log(2.0), 0.5, 0.25, 0.0, -0.125], 1e-12)


def test_a_user_primitive_of_two_inputs_without_a_rule_works_by_its_own_rules() -> None:
    # (More arities, rules, errors and transforms in test_taylor_edges.py.)
    times = fg.Primitive("times", impl=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y, g * x))
    assert fg.derivatives(lambda x: times(x, x), order=3)(0.3) == fg.derivatives(lambda x: x * x, 3)(0.3)


def test_derivatives_compose_with_other_transforms() -> None:
    # grad of a Taylor coefficient: d/dx f''(x) = f'''(x).
    third = fg.grad(lambda x: fg.derivatives(h, order=2)(x)[2])(0.3)
    assert math.isclose(third, fg.derivatives(h, order=3)(0.3)[3], rel_tol=1e-12)
    # Under jit: the same numbers as eagerly, also across a relu's guard.
    g = lambda x: h(x) + fg.relu(x - 0.1) ** 3  # noqa: E731
    step = fg.jit(fg.derivatives(g, order=5))
    for x in (0.3, 0.4, -0.2, 0.5):
        assert step(x) == fg.derivatives(g, order=5)(x)
    assert step.cache_info().traces == 2


def test_derivatives_of_a_function_of_a_list_is_an_error() -> None:
    with pytest.raises(TypeError, match="x must be one real number, got a list.*fg.hessian"):
        fg.derivatives(lambda x: x[0], order=2)([1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x must be one real number, got a bool"):
        fg.derivatives(lambda x: x, order=2)(True)


@pytest.mark.parametrize("order", [-1, 1.5, True, "2"])
def test_derivatives_order_must_be_a_non_negative_int(order: Any) -> None:
    with pytest.raises(ValueError, match="order must be a non-negative int"):
        fg.derivatives(fg.sin, order=order)


@pytest.mark.parametrize("out", [lambda x: [x], lambda x: [1.0], lambda x: (x, x), lambda x: "s"])
def test_derivatives_of_a_function_returning_a_non_scalar_is_an_error(out: Any) -> None:
    with pytest.raises(TypeError, match="f must return one scalar"):
        fg.derivatives(out, order=2)(1.0)
