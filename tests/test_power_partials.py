"""x ** y with both varying: one value for a mixed partial, whichever order.

The derivatives of ``x ** y`` are terms ``c * x ** y * log(x) ** k``; at x = 0 a
term with a log factor is 0 (JAX's d/dy x ** y = 0 there, extended to every
order) and a term whose coefficient is 0 is 0 (d/dx x ** 0 = 0). So both
orders of d2/dxdy give ``0 ** (y - 1)`` at x = 0.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import fgrad as fg


def x_then_y(x: float, y: float) -> Any:
    return fg.grad(lambda b: fg.grad(lambda a: fg.power(a, b))(x))(y)


def y_then_x(x: float, y: float) -> Any:
    return fg.grad(lambda a: fg.grad(lambda b: fg.power(a, b))(y))(x)


@pytest.mark.parametrize(("y", "want"), [(0.0, math.inf), (-1.0, math.inf), (2.0, 0.0), (0.5, math.inf)])
def test_the_mixed_partial_at_a_zero_base_is_one_value_in_both_orders(y: float, want: float) -> None:
    assert x_then_y(0.0, y) == want
    assert y_then_x(0.0, y) == want


def test_the_first_partials_at_a_zero_base_follow_the_conventions() -> None:
    dx = fg.grad(lambda a, b: fg.power(a, b), argnums=(0, 1))
    assert dx(0.0, 0.0) == (0.0, 0.0)  # x ** 0 is the constant 1; log(0) terms are 0
    assert dx(0.0, 2.0) == (0.0, 0.0)
    assert dx(0.0, -1.0) == (-math.inf, 0.0)
    assert dx(0.0, 0.5) == (math.inf, 0.0)


def test_the_hessian_at_a_zero_base_is_symmetric() -> None:
    for y, want in ((0.0, math.inf), (-1.0, math.inf), (2.0, 0.0), (0.5, math.inf), (3.0, 0.0), (1.0, 1.0)):
        h = fg.hessian(lambda p: fg.power(p[0], p[1]))([0.0, y])
        assert h[0][1] == h[1][0] == want


def central(f: Any, t: float, eps: float = 1e-6) -> float:
    return (f(t + eps) - f(t - eps)) / (2 * eps)


@pytest.mark.parametrize(("x", "y"), [(0.7, 1.3), (2.0, -0.5), (1.5, 2.5), (0.3, 0.0), (3.0, 2.0)])
def test_the_mixed_partial_at_regular_points_matches_central_differences(x: float, y: float) -> None:
    exact = math.pow(x, y - 1.0) * (1.0 + y * math.log(x))
    by_xy = central(lambda b: fg.grad(lambda a: fg.power(a, b))(x), y)
    by_yx = central(lambda a: fg.grad(lambda b: fg.power(a, b))(y), x)
    for got in (x_then_y(x, y), y_then_x(x, y)):
        assert math.isclose(got, exact, rel_tol=1e-12)
        assert math.isclose(got, by_xy, rel_tol=1e-6) and math.isclose(got, by_yx, rel_tol=1e-6)


@pytest.mark.parametrize(("x", "y"), [(0.7, 1.3), (2.0, -0.5), (1.5, 2.5)])
def test_third_partials_of_power_match_central_differences_in_every_order(x: float, y: float) -> None:
    def partial(f: Any, wrt: int) -> Any:
        return lambda a, b: fg.grad(f, argnums=wrt)(a, b)

    f: Any = fg.power
    for orders in ((0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 0), (0, 1, 1), (1, 0, 1)):
        g = f
        for wrt in orders[:2]:
            g = partial(g, wrt)
        last = orders[2]
        got = partial(g, last)(x, y)
        step = (lambda t, g=g: g(t, y)) if last == 0 else (lambda t, g=g: g(x, t))
        assert math.isclose(got, central(step, x if last == 0 else y), rel_tol=1e-5), orders


def test_power_derivatives_under_jit_and_vmap_match_the_eager_ones() -> None:
    pytest.importorskip("numpy")

    def both(p: Any) -> Any:
        return fg.grad(lambda q: fg.power(q[0], q[1]))(p)

    points = [[0.0, 0.0], [0.0, 2.0], [0.5, 1.5], [2.0, -1.0], [-2.0, 3.0]]
    eager = [both(p) for p in points]
    batched = fg.jit(fg.vmap(both))(points)
    assert "over the batch" in fg.jit(fg.vmap(both)).source(points)
    for got, want in zip(batched, eager):
        for a, b in zip(got, want):
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
