"""The transform family: jvp, vjp, linearize, jacobians, hessian, custom
rules, Taylor-mode derivatives, and their nestings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector

import fgrad as fg
from fgrad.testing import check_grads, expressions, floats_in

SMALL = floats_in(-2.0, 2.0)


def test_jvp_of_pytrees_gives_the_output_structure():
    f = lambda p: {"s": p["w"] * p["x"], "t": (fg.sin(p["w"]),)}  # noqa: E731
    out, dout = fg.jvp(f, ({"w": 2.0, "x": 3.0},), ({"w": 1.0, "x": 0.5},))
    assert out == {"s": 6.0, "t": (math.sin(2.0),)}
    assert dout["s"] == 3.0 + 2.0 * 0.5 and dout["t"][0] == pytest.approx(math.cos(2.0))


def test_vjp_is_reusable_pure_and_shaped_like_the_primals():
    out, f_vjp = fg.vjp(lambda p, q: p["a"] * q[0] + q[1], {"a": 2.0}, [3.0, 4.0])
    assert out == 10.0
    first = f_vjp(1.0)
    assert isinstance(first[0], PMap) and isinstance(first[1], PVector)
    assert dict(first[0]) == {"a": 3.0} and list(first[1]) == [2.0, 1.0]
    assert f_vjp(1.0) == first and list(f_vjp(2.0)[1]) == [4.0, 2.0]


def test_linearize_reuses_one_trace():
    out, f_jvp = fg.linearize(lambda x, y: fg.exp(x) * y, 0.0, 2.0)
    assert out == 2.0 and f_jvp(1.0, 0.0) == 2.0 and f_jvp(0.0, 1.0) == 1.0


def test_hessian_is_nested_persistent_maps():
    h = fg.hessian(lambda p: p["w"] ** 2 * p["b"] + fg.sin(p["w"]))({"w": 1.0, "b": 2.0})
    assert isinstance(h, PMap) and isinstance(h["w"], PMap)
    assert h["w"]["b"] == h["b"]["w"] == 2.0
    assert h["w"]["w"] == pytest.approx(4.0 - math.sin(1.0)) and h["b"]["b"] == 0.0


@given(
    st.lists(st.lists(st.floats(-3, 3), min_size=3, max_size=3), min_size=3, max_size=3),
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
)
def test_hessian_of_a_random_quadratic_form_is_its_symmetric_matrix(a, x):
    def f(v):
        return 0.5 * fg.sum([a[i][j] * v[i] * v[j] for i in range(3) for j in range(3)])

    h = fg.hessian(f)(x)
    for i in range(3):
        for j in range(3):
            assert h[i][j] == pytest.approx(0.5 * (a[i][j] + a[j][i]), abs=1e-12)


@given(expressions(n_inputs=2, max_steps=6), expressions(n_inputs=2, max_steps=6), SMALL, SMALL)
def test_jacfwd_equals_jacrev(f, g, x, y):
    h = lambda a, b: (f(a, b), {"g": g(a, b)})  # noqa: E731
    fwd = fg.jacfwd(h, argnums=(0, 1))(x, y)
    rev = fg.jacrev(h, argnums=(0, 1))(x, y)
    assert fg.tree_leaves(fwd) == pytest.approx(fg.tree_leaves(rev), rel=1e-9, abs=1e-12)


def test_jacobian_puts_the_output_outside_and_the_params_inside():
    jac = fg.jacobian(lambda p: [p["a"] * p["b"], p["a"] + 1.0])({"a": 2.0, "b": 5.0})
    assert isinstance(jac, PVector) and dict(jac[0]) == {"a": 5.0, "b": 2.0}
    assert dict(jac[1]) == {"a": 1.0, "b": 0.0}


def test_stop_gradient_is_zero_at_every_order_and_mode():
    f = lambda x: x * fg.stop_gradient(x * x)  # noqa: E731
    assert fg.grad(f)(3.0) == 9.0
    assert fg.grad(fg.grad(f))(3.0) == 0.0
    assert fg.jvp(f, (3.0,), (1.0,)) == (27.0, 9.0)
    assert fg.derivatives(f, order=2)(3.0) == [27.0, 9.0, 0.0]


def test_hessian_vector_products_forward_over_reverse():
    f = lambda v: v[0] ** 2 * v[1] + fg.exp(v[1])  # noqa: E731
    x, d = [1.0, 0.5], [1.0, -2.0]
    _, hv = fg.jvp(fg.grad(f), (x,), (d,))
    h = fg.hessian(f)(x)
    assert list(hv) == pytest.approx([h[0][0] * d[0] + h[0][1] * d[1], h[1][0] * d[0] + h[1][1] * d[1]])


# d/dx [x * D_y(x + y)] at x = y = 1 is 1 for every inner derivative D; an
# implementation that confuses the two perturbations gives 2.
INNER = {
    "grad": lambda x: fg.grad(lambda y: x + y)(1.0),
    "jvp": lambda x: fg.jvp(lambda y: x + y, (1.0,), (1.0,))[1],
    "vjp": lambda x: fg.vjp(lambda y: x + y, 1.0)[1](1.0)[0],
    "linearize": lambda x: fg.linearize(lambda y: x + y, 1.0)[1](1.0),
    "jacfwd": lambda x: fg.jacfwd(lambda y: x + y)(1.0),
    "jacrev": lambda x: fg.jacrev(lambda y: x + y)(1.0),
    "derivatives": lambda x: fg.derivatives(lambda y: x + y, order=1)(1.0)[1],
}
OUTER = {
    "grad": lambda f: fg.grad(f)(1.0),
    "jvp": lambda f: fg.jvp(f, (1.0,), (1.0,))[1],
    "vjp": lambda f: fg.vjp(f, 1.0)[1](1.0)[0],
    "linearize": lambda f: fg.linearize(f, 1.0)[1](1.0),
    "jacfwd": lambda f: fg.jacfwd(f)(1.0),
    "jacrev": lambda f: fg.jacrev(f)(1.0),
    "derivatives": lambda f: fg.derivatives(f, order=1)(1.0)[1],
}


@pytest.mark.parametrize("outer", sorted(OUTER))
@pytest.mark.parametrize("inner", sorted(INNER))
def test_no_perturbation_confusion_for_any_pair_of_transforms(outer, inner):
    assert OUTER[outer](lambda x: x * INNER[inner](x)) == 1.0


@pytest.mark.parametrize("order", [2, 3])
def test_jvp_and_grad_nest_both_ways_to_third_order(order):
    f = lambda x: fg.sin(x) * fg.exp(x)  # noqa: E731
    expected = fg.derivatives(f, order=order)(0.4)[order]
    g = f
    for k in range(order - 1):
        g = fg.grad(g) if k % 2 else (lambda h: lambda x: fg.jvp(h, (x,), (1.0,))[1])(g)
    assert fg.grad(g)(0.4) == pytest.approx(expected, rel=1e-12)


# Custom rules ---------------------------------------------------------------


@fg.custom_vjp
def log1pexp(x):
    return fg.log(1.0 + fg.exp(x))


log1pexp.defvjp(lambda x: (log1pexp(x), (x,)), lambda res, g: (g * fg.sigmoid(res[0]),))


@fg.custom_jvp
def softclip(x):
    return fg.tanh(x) * 2.0


@softclip.defjvp
def _softclip_rule(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softclip(x), dx * 2.0 * (1.0 - fg.tanh(x) ** 2)


def test_custom_vjp_keeps_log1pexp_stable():
    assert math.isnan(fg.grad(lambda x: fg.log(1.0 + fg.exp(x)))(1000.0))
    assert fg.grad(log1pexp)(1000.0) == 1.0


@pytest.mark.parametrize("f", [log1pexp, softclip])
def test_custom_rules_check_in_both_modes_to_second_order(f):
    check_grads(f, (0.3,), order=2, modes=("fwd", "rev"))
    assert fg.jit(fg.grad(f))(0.3) == fg.grad(f)(0.3)
    assert fg.hessian(f)(0.3) == pytest.approx(fg.grad(fg.grad(f))(0.3))


def test_custom_rule_errors_say_what_to_return():
    @fg.custom_vjp
    def f(x, y):
        return x * y

    with pytest.raises(TypeError, match="has no rules yet"):
        f(1.0, 2.0)
    f.defvjp(lambda x, y: (f(x, y), (x, y)), lambda res, g: (g * res[1],))
    with pytest.raises(TypeError, match="returned a tuple of 1, but the function has 2 input"):
        fg.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: f(x, y), lambda res, g: (g, g))
    with pytest.raises(TypeError, match=r"must return \(out, residuals\)"):
        fg.grad(f)(1.0, 2.0)


# Taylor mode ---------------------------------------------------------------


@given(floats_in(-2.0, 2.0))
def test_derivatives_of_exp_sin_and_tanh(x):
    assert fg.derivatives(fg.exp, order=8)(x) == pytest.approx([math.exp(x)] * 9, rel=1e-12)
    cycle = [math.sin(x), math.cos(x), -math.sin(x), -math.cos(x)]
    assert fg.derivatives(fg.sin, order=8)(x) == pytest.approx([cycle[k % 4] for k in range(9)], abs=1e-12)
    nested, g = [], fg.tanh
    for _ in range(6):
        nested.append(g(x))
        g = fg.grad(g)
    assert fg.derivatives(fg.tanh, order=5)(x) == pytest.approx(nested, rel=1e-9, abs=1e-12)


def test_tenth_derivative_and_a_primitive_without_a_rule():
    f = lambda x: fg.tanh(fg.sin(x)) * fg.exp(x)  # noqa: E731
    d = fg.derivatives(f, order=10)(0.7)
    g, nested = f, []
    for _ in range(7):
        nested.append(g(0.7))
        g = fg.grad(g)
    assert len(d) == 11 and d[:7] == pytest.approx(nested, rel=1e-9)
    cube = fg.Primitive("cube", impl=lambda x: x**3, vjp=lambda g, out, x: (g * 3.0 * x * x,))
    assert fg.derivatives(cube, order=4)(2.0) == pytest.approx([8.0, 12.0, 12.0, 6.0, 0.0])


def test_derivative_and_jacobian_errors():
    with pytest.raises(TypeError, match="x must be one real number"):
        fg.derivatives(lambda x: x, order=2)([1.0])
    with pytest.raises(ValueError, match="non-negative int"):
        fg.derivatives(lambda x: x, order=-1)
    with pytest.raises(TypeError, match="must return one scalar"):
        fg.derivatives(lambda x: [x], order=1)(1.0)
    with pytest.raises(TypeError, match=r"output at \[1\] is a str"):
        fg.jacobian(lambda x: [x, "label"])(1.0)
    with pytest.raises(ValueError, match="tangents must have the structure of primals"):
        fg.jvp(lambda p: p["a"], ({"a": 1.0},), ({"b": 1.0},))
    with pytest.raises(TypeError, match=r"tangents\[0\]\['a'\] is a str"):
        fg.jvp(lambda p: p["a"], ({"a": 1.0},), ({"a": "x"},))
    with pytest.raises(ValueError, match="cotangent must have the structure of the output"):
        fg.vjp(lambda x: (x, x), 1.0)[1](1.0)
