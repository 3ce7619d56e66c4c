"""Forward mode and friends: jvp, vjp, linearize, stop_gradient, nesting,
perturbation confusion, and check_grads as the oracle for every primitive."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap

import fgrad as fg
from fgrad.testing import check_grads, expressions, floats_in, op_inputs


def close(a: float, b: float, tol: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def model(p: Any) -> Any:
    """A pytree in, a pytree out."""
    h = fg.tanh(p["w"] * 3.0 + p["b"])
    return {"h": h, "pair": (p["w"] * p["b"], fg.exp(p["b"]))}


PARAMS = pmap({"w": 0.5, "b": -1.0})


# jvp -----------------------------------------------------------------------------------


def test_jvp_of_a_pytree_function_gives_the_output_and_its_tangent_in_its_structure() -> None:
    out, dout = fg.jvp(model, (PARAMS,), ({"w": 1.0, "b": 0.0},))
    assert out == model(PARAMS)
    assert set(dout) == {"h", "pair"} and isinstance(dout["pair"], tuple)
    h = math.tanh(0.5 * 3.0 - 1.0)
    assert close(dout["h"], 3.0 * (1.0 - h * h))
    assert dout["pair"] == (-1.0, 0.0)  # d(w b)/dw = b; exp(b) does not move with w


def test_jvp_along_a_direction_equals_the_gradient_dotted_with_it() -> None:
    def loss(p: Any) -> Any:
        out = model(p)
        return out["h"] * out["pair"][0] + out["pair"][1]

    grads = fg.grad(loss)(PARAMS)
    v = {"w": 0.25, "b": -2.0}
    _, along = fg.jvp(loss, (PARAMS,), (v,))
    assert close(along, grads["w"] * 0.25 + grads["b"] * -2.0)


def test_jvp_of_several_arguments_takes_a_tangent_per_argument() -> None:
    out, dout = fg.jvp(lambda x, ys: x * ys[0] + ys[1], (2.0, [3.0, 4.0]), (1.0, [0.0, 10.0]))
    assert out == 10.0 and dout == 3.0 + 10.0


def test_jvp_of_an_output_that_ignores_the_input_has_a_zero_tangent() -> None:
    out, dout = fg.jvp(lambda x: {"c": 5.0, "x": x}, (2.0,), (3.0,))
    assert out == {"c": 5.0, "x": 2.0} and dout == {"c": 0.0, "x": 3.0}


@given(expressions(n_inputs=2), floats_in(-2.0, 2.0), floats_in(-2.0, 2.0), floats_in(-1.0, 1.0))
def test_jvp_agrees_with_reverse_mode_on_random_functions(f: Any, x: float, y: float, v: float) -> None:
    value, (gx, gy) = fg.value_and_grad(f, argnums=(0, 1))(x, y)
    assume(math.isfinite(value) and math.isfinite(gx) and math.isfinite(gy))
    out, dout = fg.jvp(f, (x, y), (v, 1.0))
    assert out == value
    assert math.isclose(dout, gx * v + gy, rel_tol=1e-9, abs_tol=1e-9)


# vjp -----------------------------------------------------------------------------------


def test_vjp_returns_the_output_and_a_pure_reusable_pullback() -> None:
    out, f_vjp = fg.vjp(model, PARAMS)
    assert out == model(PARAMS)
    g = {"h": 1.0, "pair": (0.0, 2.0)}
    first = f_vjp(g)
    assert type(first) is tuple and len(first) == 1
    (cts,) = first
    assert isinstance(cts, PMap) and set(cts) == {"w", "b"}
    assert f_vjp(g) == first  # pure: the same answer again
    h = math.tanh(0.5)
    assert close(cts["w"], 3.0 * (1.0 - h * h))
    assert close(cts["b"], (1.0 - h * h) + 2.0 * math.exp(-1.0))
    (doubled,) = f_vjp({"h": 2.0, "pair": (0.0, 4.0)})
    assert doubled["w"] == 2.0 * cts["w"] and doubled["b"] == 2.0 * cts["b"]  # linear, exactly
    assert f_vjp(g) == first  # still pure after other calls


def test_vjp_gives_one_persistent_cotangent_per_primal() -> None:
    out, f_vjp = fg.vjp(lambda x, ys, d: x * ys[0] * ys[1] + d["k"], 2.0, [3.0, 4.0], {"k": 1.0})
    assert out == 25.0
    cx, cys, cd = f_vjp(1.0)
    assert cx == 12.0
    assert isinstance(cys, PVector) and list(cys) == [8.0, 6.0]
    assert isinstance(cd, PMap) and cd == pmap({"k": 1.0})


def test_vjp_agrees_with_grad() -> None:
    def loss(p: Any) -> Any:
        return fg.sin(p["w"]) * p["b"] ** 2

    _, f_vjp = fg.vjp(loss, PARAMS)
    assert f_vjp(1.0)[0] == fg.grad(loss)(PARAMS)


def test_vjp_with_a_cotangent_of_the_wrong_structure_names_the_difference() -> None:
    _, f_vjp = fg.vjp(model, PARAMS)
    with pytest.raises(ValueError, match=r"cotangent must have the structure of the output.*\['pair'\]"):
        f_vjp({"h": 1.0, "pair": (0.0,)})
    with pytest.raises(ValueError, match="cotangent must have the structure of the output"):
        f_vjp(1.0)
    with pytest.raises(TypeError, match=r"cotangent\['h'\] is a str"):
        f_vjp({"h": "one", "pair": (0.0, 1.0)})


def test_a_pullback_kept_past_its_outer_transform_raises_a_clear_error() -> None:
    saved: dict[str, Any] = {}

    def inner(x: Any) -> Any:
        out, f_vjp = fg.vjp(lambda y: x * y, 2.0)
        saved["f_vjp"] = f_vjp
        return out

    assert fg.grad(inner)(1.0) == 2.0
    with pytest.raises(fg.EscapedNodeError, match="used after grad returned"):
        saved["f_vjp"](1.0)


# linearize -------------------------------------------------------------------------------


def test_linearize_gives_a_reusable_jvp() -> None:
    out, f_jvp = fg.linearize(model, PARAMS)
    assert out == model(PARAMS)
    for v in ({"w": 1.0, "b": 0.0}, {"w": 0.0, "b": 1.0}, {"w": -0.5, "b": 2.0}):
        assert f_jvp(v) == fg.jvp(model, (PARAMS,), (v,))[1]
    first = f_jvp({"w": 0.3, "b": 0.7})
    assert f_jvp({"w": 0.3, "b": 0.7}) == first  # pure
    doubled = f_jvp({"w": 0.6, "b": 1.4})
    assert doubled["h"] == 2.0 * first["h"] and doubled["pair"] == tuple(2.0 * d for d in first["pair"])


def test_linearize_checks_the_tangents_structure() -> None:
    _, f_jvp = fg.linearize(model, PARAMS)
    with pytest.raises(ValueError, match=r"tangents must have the structure of primals"):
        f_jvp({"w": 1.0})
    with pytest.raises(TypeError, match=r"tangents\[0\]\['b'\] is a str"):
        f_jvp({"w": 1.0, "b": "x"})


# tangents that do not match ---------------------------------------------------------------


def test_jvp_tangents_of_another_structure_name_the_path() -> None:
    message = r"tangents must have the structure of primals; they differ at \[0\]"
    with pytest.raises(ValueError, match=message):
        fg.jvp(model, (PARAMS,), ({"w": 1.0},))
    with pytest.raises(ValueError, match=r"differ at \[0\]\['b'\]"):
        fg.jvp(model, (PARAMS,), ({"w": 1.0, "b": [1.0]},))
    with pytest.raises(ValueError, match="tangents must have the structure of primals"):
        fg.jvp(lambda x, y: x * y, (1.0, 2.0), (1.0,))


def test_jvp_tangent_leaves_must_be_real_numbers_and_the_error_names_the_leaf() -> None:
    with pytest.raises(TypeError, match=r"tangents\[0\]\['b'\] is a str"):
        fg.jvp(model, (PARAMS,), ({"w": 1.0, "b": "x"},))
    with pytest.raises(TypeError, match=r"tangents\[1\] is a bool"):
        fg.jvp(lambda x, y: x * y, (1.0, 2.0), (1.0, True))


def test_jvp_wants_tuples_of_arguments() -> None:
    with pytest.raises(TypeError, match=r"jvp\(f, \(x,\), \(dx,\)\)"):
        fg.jvp(fg.sin, 1.0, 1.0)  # type: ignore[arg-type]


# stop_gradient ---------------------------------------------------------------------------


def test_stop_gradient_passes_the_value_and_blocks_derivatives_of_every_order() -> None:
    assert fg.stop_gradient(3.0) == 3.0
    assert fg.grad(lambda x: fg.stop_gradient(x))(3.0) == 0.0
    assert fg.grad(lambda x: fg.stop_gradient(x * x) * x)(3.0) == 9.0  # the constant 9
    assert fg.grad(fg.grad(lambda x: fg.stop_gradient(x * x) * x))(3.0) == 0.0
    assert fg.grad(fg.grad(lambda x: fg.stop_gradient(x) * x * x))(3.0) == 6.0
    assert fg.jvp(fg.stop_gradient, (1.0,), (1.0,)) == (1.0, 0.0)
    assert fg.jvp(lambda x: fg.stop_gradient(x) * x, (2.0,), (1.0,)) == (4.0, 2.0)
    assert fg.jvp(fg.grad(lambda x: fg.stop_gradient(x) * x**3), (2.0,), (1.0,)) == (24.0, 24.0)
    assert fg.derivatives(lambda x: fg.stop_gradient(x * x) * x, 3)(3.0) == [27.0, 9.0, 0.0, 0.0]
    _, f_vjp = fg.vjp(lambda x: fg.stop_gradient(x) + 0.0 * x, 1.0)
    assert f_vjp(1.0) == (0.0,)


# Hessian-vector products and nesting -----------------------------------------------------


def test_hessian_vector_product_by_forward_over_reverse() -> None:
    def f(xs: Any) -> Any:
        x, y, z = xs
        return fg.sin(x * y) + fg.exp(y) * z * z + x * x * x

    xs = [0.3, -0.7, 1.1]
    v = [1.0, -2.0, 0.5]
    _, hv = fg.jvp(fg.grad(f), (xs,), (v,))
    h = fg.hessian(f)(xs)
    assert isinstance(hv, PVector) and len(hv) == 3
    for i in range(3):
        assert close(hv[i], sum(h[i][j] * v[j] for j in range(3)))


@given(expressions(n_inputs=3, max_steps=6), st.lists(floats_in(-1.5, 1.5), min_size=6, max_size=6))
def test_hessian_vector_products_equal_the_hessian_times_the_vector(f: Any, nums: list[float]) -> None:
    xs, v = nums[:3], nums[3:]

    def g(p: Any) -> Any:
        return f(*p)

    h = fg.hessian(g)(xs)
    _, hv = fg.jvp(fg.grad(g), (xs,), (v,))
    for i in range(3):
        want = sum(h[i][j] * v[j] for j in range(3))
        assume(math.isfinite(want))
        assert math.isclose(hv[i], want, rel_tol=1e-8, abs_tol=1e-8)


def _d_grad(f: Any) -> Any:
    return fg.grad(f)


def _d_jvp(f: Any) -> Any:
    return lambda x: fg.jvp(f, (x,), (1.0,))[1]


def test_jvp_and_grad_nest_both_ways_to_order_three() -> None:
    def f(x: Any) -> Any:
        return fg.sin(x) * x**3

    x = 0.7
    third = 6 * math.sin(x) + 18 * x * math.cos(x) - 9 * x * x * math.sin(x) - x**3 * math.cos(x)
    for ds in itertools.product((_d_grad, _d_jvp), repeat=3):
        g = f
        for d in ds:
            g = d(g)
        assert close(g(x), third), [d.__name__ for d in ds]


# Perturbation confusion: every pair of nested transforms -----------------------------------

# Each gives the derivative of a scalar function of a scalar at x.
D = {
    "grad": lambda f, x: fg.grad(f)(x),
    "jvp": lambda f, x: fg.jvp(f, (x,), (1.0,))[1],
    "vjp": lambda f, x: fg.vjp(f, x)[1](1.0)[0],
    "jacfwd": lambda f, x: fg.jacfwd(f)(x),
    "jacrev": lambda f, x: fg.jacrev(f)(x),
    "linearize": lambda f, x: fg.linearize(f, x)[1](1.0),
    "derivatives": lambda f, x: fg.derivatives(f, 1)(x)[1],
}


@pytest.mark.parametrize("outer, inner", list(itertools.product(D, D)))
def test_no_perturbation_confusion(outer: str, inner: str) -> None:
    d_out, d_in = D[outer], D[inner]
    # d/dx [x * d/dy (x + y)] = 1 at x = y = 1 (a confused implementation gives 2).
    assert d_out(lambda x: x * d_in(lambda y: x + y, 1.0), 1.0) == 1.0
    # d/dx [x * d/dy (x y^2)] at y = 1 is d/dx [2 x^2] = 4 x = 4 at x = 1.
    assert d_out(lambda x: x * d_in(lambda y: x * y * y, 1.0), 1.0) == 4.0
    # The inner point depends on x: d/dx [d/dy (x y^2) at y = x] = d/dx [2 x^2] = 6 at 1.5.
    assert d_out(lambda x: d_in(lambda y: x * y * y, x), 1.5) == 6.0


def test_derivatives_of_order_two_inside_grad_do_not_confuse_perturbations() -> None:
    # d/dx [x * f''(y) at y=1] for f(y) = x y^3: f'' = 6 x y, so d/dx [6 x^2] = 12 x.
    g = fg.grad(lambda x: x * fg.derivatives(lambda y: x * y**3, 2)(1.0)[2])
    assert g(1.0) == 12.0 and g(0.5) == 6.0


def test_pullbacks_and_pushforwards_can_be_differentiated_in_their_argument() -> None:
    def f(x: Any) -> Any:
        return fg.sin(x) * x**3

    want = math.cos(0.7) * 0.7**3 + 3 * 0.7**2 * math.sin(0.7)
    _, f_vjp = fg.vjp(f, 0.7)
    _, f_jvp = fg.linearize(f, 0.7)
    assert close(fg.grad(lambda g: f_vjp(g)[0])(2.0), want)
    assert close(fg.grad(f_jvp)(2.0), want)
    assert close(fg.grad(lambda v: fg.jvp(f, (0.7,), (v,))[1])(2.0), want)


# check_grads is the oracle for every primitive ----------------------------------------------

UNARY = ["exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs"]


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_check_grads_of_every_unary_primitive(name: str, data: Any) -> None:
    x = data.draw(op_inputs(name))
    check_grads(getattr(fg, name), (x,), order=2, modes=("fwd", "rev"))


def _away_from_ties(pair: tuple[float, float]) -> bool:
    return abs(pair[0] - pair[1]) > 1e-2


BINARY = {
    "add": (lambda x, y: x + y, st.tuples(floats_in(-3, 3), floats_in(-3, 3))),
    "sub": (lambda x, y: x - y, st.tuples(floats_in(-3, 3), floats_in(-3, 3))),
    "mul": (lambda x, y: x * y, st.tuples(floats_in(-3, 3), floats_in(-3, 3))),
    "div": (
        lambda x, y: x / y,
        st.tuples(floats_in(-3, 3), st.one_of(floats_in(0.2, 3), floats_in(-3, -0.2))),
    ),
    "fg.div": (fg.div, st.tuples(floats_in(-3, 3), floats_in(0.2, 3))),
    "power": (fg.power, st.tuples(floats_in(0.2, 3), floats_in(-2, 2))),
    "pow operator": (lambda x, y: x**y, st.tuples(floats_in(0.2, 3), floats_in(-2, 2))),
    "maximum": (fg.maximum, st.tuples(floats_in(-3, 3), floats_in(-3, 3)).filter(_away_from_ties)),
    "minimum": (fg.minimum, st.tuples(floats_in(-3, 3), floats_in(-3, 3)).filter(_away_from_ties)),
}


@pytest.mark.parametrize("name", list(BINARY))
@given(data=st.data())
def test_check_grads_of_every_binary_primitive(name: str, data: Any) -> None:
    f, inputs = BINARY[name]
    check_grads(f, data.draw(inputs), order=2, modes=("fwd", "rev"))


@given(floats_in(-3, 3), floats_in(-3, 3), floats_in(-3, 3))
def test_check_grads_of_sum_dot_neg_and_constant_powers(x: float, y: float, z: float) -> None:
    check_grads(lambda a, b, c: fg.sum([a, b * c, c, 2.0]), (x, y, z), order=2, modes=("fwd", "rev"))
    check_grads(lambda a, b, c: fg.dot([a, b], [c, a], bias=b), (x, y, z), order=2, modes=("fwd", "rev"))
    check_grads(lambda a, b, c: fg.dot([a, 2.0, c], [b, b, 0.5]), (x, y, z), order=2, modes=("fwd", "rev"))
    check_grads(lambda a: -a * a, (x,), order=2, modes=("fwd", "rev"))
    check_grads(lambda a: a**3 + fg.power(a, 2) + a**0, (x,), order=2, modes=("fwd", "rev"))
    check_grads(lambda a: fg.mean([a, a * a, 1.0]), (x,), order=2, modes=("fwd", "rev"))


@given(floats_in(0.2, 3))
def test_check_grads_of_fractional_and_negative_constant_powers(x: float) -> None:
    check_grads(lambda a: a**2.5 + fg.power(a, -1.5) + 2.0**a, (x,), order=2, modes=("fwd", "rev"))


def test_derivatives_at_kinks_follow_the_documented_conventions() -> None:
    # Where no finite difference can be the oracle, the conventions are: relu'(0) = 0,
    # abs'(0) = 0, a tie of maximum splits 0.5/0.5, sqrt'(0) = inf.
    assert fg.grad(fg.relu)(0.0) == 0.0 and fg.grad(fg.abs)(0.0) == 0.0
    assert fg.grad(fg.maximum, argnums=(0, 1))(1.0, 1.0) == (0.5, 0.5)
    assert fg.grad(fg.sqrt)(0.0) == math.inf
    assert fg.jvp(fg.relu, (0.0,), (1.0,))[1] == 0.0 and fg.jvp(fg.abs, (0.0,), (1.0,))[1] == 0.0


# check_grads fails when a rule is wrong ----------------------------------------------------

wrong_vjp = fg.Primitive(
    "wrong_vjp",
    impl=math.sin,
    vjp=lambda g, out, x: (g * fg.cos(x) * 1.1,),
    jvp=lambda dxs, out, x: dxs[0] * fg.cos(x),
)
wrong_jvp = fg.Primitive(
    "wrong_jvp",
    impl=math.sin,
    vjp=lambda g, out, x: (g * fg.cos(x),),
    jvp=lambda dxs, out, x: dxs[0] * fg.cos(x) * 1.1,
)
# A cos whose own derivative has the wrong sign: a sin built on it has right first
# derivatives and wrong second ones.
fake_cos = fg.Primitive(
    "fake_cos",
    impl=math.cos,
    vjp=lambda g, out, x: (g * fg.sin(x),),
    jvp=lambda dxs, out, x: dxs[0] * fg.sin(x),
)
sin_on_fake_cos = fg.Primitive(
    "sin_on_fake_cos",
    impl=math.sin,
    vjp=lambda g, out, x: (g * fake_cos(x),),
    jvp=lambda dxs, out, x: dxs[0] * fg.cos(x),
)


def _uses(prim: fg.Primitive) -> Any:
    return lambda p: prim(p["a"]) * p["b"]


POINT = ({"a": 0.3, "b": 2.0},)


def test_check_grads_catches_a_wrong_vjp_and_names_mode_order_and_leaf() -> None:
    with pytest.raises(AssertionError, match=r"mode rev, order 1: at argument 0\['a'\]"):
        check_grads(_uses(wrong_vjp), POINT, order=2, modes=("fwd", "rev"))


def test_check_grads_catches_a_wrong_jvp_and_names_mode_order_and_leaf() -> None:
    with pytest.raises(AssertionError, match=r"mode fwd, order 1: at argument 0\['a'\]"):
        check_grads(_uses(wrong_jvp), POINT, order=2, modes=("fwd", "rev"))
    # Reverse mode alone still catches it, through <grad f, v> == jvp(f, v).
    with pytest.raises(AssertionError, match=r"mode rev, order 1: .*inner-product identity"):
        check_grads(_uses(wrong_jvp), POINT, order=1, modes=("rev",))


def test_check_grads_catches_a_rule_that_is_wrong_only_at_second_order() -> None:
    check_grads(_uses(sin_on_fake_cos), POINT, order=1, modes=("fwd", "rev"))
    with pytest.raises(AssertionError, match=r"mode rev, order 2"):
        check_grads(_uses(sin_on_fake_cos), POINT, order=2, modes=("fwd", "rev"))


def test_check_grads_passes_a_correct_user_primitive() -> None:
    good = fg.Primitive(
        "good_sin",
        impl=math.sin,
        vjp=lambda g, out, x: (g * fg.cos(x),),
        jvp=lambda dxs, out, x: dxs[0] * fg.cos(x),
    )
    check_grads(_uses(good), POINT, order=3, modes=("fwd", "rev"))
