"""Primitives: values on floats and nodes, derivatives, IEEE numerics, kinks."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.primitives import ops
from fgrad.testing import check_grads, floats_in, numerical_grad, op_inputs

inf = math.inf
nan = math.nan

# check_grads is the oracle for every primitive: both modes, second order.
MODES = ("rev", "fwd")


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# Values on plain floats ------------------------------------------------------------

UNARY_REFERENCE = {
    "exp": (fg.exp, math.exp),
    "log": (fg.log, math.log),
    "tanh": (fg.tanh, math.tanh),
    "relu": (fg.relu, lambda x: max(x, 0.0)),
    "sigmoid": (fg.sigmoid, lambda x: 1.0 / (1.0 + math.exp(-x))),
    "sqrt": (fg.sqrt, math.sqrt),
    "sin": (fg.sin, math.sin),
    "cos": (fg.cos, math.cos),
    "abs": (fg.abs, abs),
    "floor": (fg.floor, lambda x: float(math.floor(x))),
    "ceil": (fg.ceil, lambda x: float(math.ceil(x))),
    "trunc": (fg.trunc, lambda x: float(math.trunc(x))),
    "round": (fg.round, lambda x: float(round(x))),
}


@pytest.mark.parametrize("name", sorted(UNARY_REFERENCE))
@given(data=st.data())
def test_unary_op_on_a_float_returns_the_float_math_gives(name: str, data: Any) -> None:
    op, reference = UNARY_REFERENCE[name]
    x = data.draw(op_inputs(name))
    out = op(x)
    assert type(out) is float
    assert close(out, reference(x), 1e-12)


BINARY_REFERENCE = {
    "add": (ops.add, lambda x, y: x + y),
    "sub": (ops.sub, lambda x, y: x - y),
    "mul": (ops.mul, lambda x, y: x * y),
    "div": (fg.div, lambda x, y: x / y),
    "maximum": (fg.maximum, max),
    "minimum": (fg.minimum, min),
    "power": (fg.power, math.pow),
    "mod": (fg.mod, lambda x, y: x % y),
    "floor_divide": (fg.floor_divide, lambda x, y: x // y),
}


@pytest.mark.parametrize("name", sorted(BINARY_REFERENCE))
@given(x=floats_in(0.1, 5.0), y=floats_in(-3.0, 3.0))
def test_binary_op_on_floats_returns_the_float_math_gives(name: str, x: float, y: float) -> None:
    op, reference = BINARY_REFERENCE[name]
    assume(y != 0.0)
    out = op(x, y)
    assert type(out) is float
    assert close(out, reference(x, y), 1e-12)


def test_neg_sum_dot_mean_stop_gradient_on_floats() -> None:
    assert ops.neg(2.5) == -2.5
    assert fg.sum([1.0, 2.0, 3.5]) == 6.5 and type(fg.sum([1.0, 2.0])) is float
    assert fg.sum([]) == 0.0
    assert fg.sum(x for x in (1.0, 2.0)) == 3.0
    assert fg.dot([1.0, 2.0], [3.0, 4.0]) == 11.0
    assert fg.dot([1.0, 2.0], [3.0, 4.0], bias=0.5) == 11.5
    assert fg.dot([], []) == 0.0
    assert fg.mean([1.0, 2.0, 6.0]) == 3.0
    assert fg.stop_gradient(3.0) == 3.0


def test_ops_accept_ints() -> None:
    assert fg.exp(0) == 1.0
    assert fg.power(2, 10) == 1024.0
    assert fg.div(1, 4) == 0.25
    assert fg.sum([1, 2]) == 3.0
    assert fg.dot([1, 2], [3, 4], bias=1) == 12.0


def test_dot_with_mismatched_lengths_raises() -> None:
    with pytest.raises(ValueError, match="same length"):
        fg.dot([1.0, 2.0], [1.0])


def test_mean_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        fg.mean([])


# On nodes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNARY_REFERENCE))
def test_unary_op_on_a_node_records_one_node_with_the_float_value(name: str) -> None:
    op, reference = UNARY_REFERENCE[name]
    out = fg.trace(op)(0.7)
    assert isinstance(out, fg.Expr)
    assert out.prim is not None and out.prim.name == name
    assert close(out.value, reference(0.7), 1e-12)
    assert fg.count_nodes(out) == 2


OPERATOR_CASES = [
    ("x + y", lambda x, y: x + y, 5.0),
    ("x - y", lambda x, y: x - y, -1.0),
    ("x * y", lambda x, y: x * y, 6.0),
    ("x / y", lambda x, y: x / y, 2.0 / 3.0),
    ("x ** y", lambda x, y: x**y, 8.0),
    ("-x", lambda x, y: -x, -2.0),
    ("abs(-x)", lambda x, y: abs(-x), 2.0),
    ("x + 1", lambda x, y: x + 1, 3.0),
    ("1 + x", lambda x, y: 1 + x, 3.0),
    ("x - 1", lambda x, y: x - 1, 1.0),
    ("1 - x", lambda x, y: 1 - x, -1.0),
    ("3 * x", lambda x, y: 3 * x, 6.0),
    ("x * 3", lambda x, y: x * 3, 6.0),
    ("x / 4", lambda x, y: x / 4, 0.5),
    ("4 / x", lambda x, y: 4 / x, 2.0),
    ("x ** 2", lambda x, y: x**2, 4.0),
    ("x ** 0.5", lambda x, y: x**0.5, math.sqrt(2.0)),
    ("2 ** y", lambda x, y: 2**y, 8.0),
    ("2.0 ** y", lambda x, y: 2.0**y, 8.0),
    ("+x", lambda x, y: +x, 2.0),
]


@pytest.mark.parametrize("text, f, expected", OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_operators_on_nodes_with_numbers_on_either_side(text: str, f: Any, expected: float) -> None:
    out = fg.trace(f)(2.0, 3.0)
    assert isinstance(out, fg.Expr)
    assert close(out.value, expected, 1e-12)


@pytest.mark.parametrize("text, f, expected", OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_operators_on_nodes_have_the_derivatives_of_their_float_versions(
    text: str, f: Any, expected: float
) -> None:
    check_grads(f, (2.0, 3.0), order=2, modes=MODES)


def test_sum_is_one_n_ary_node_and_builtin_sum_is_a_chain() -> None:
    assert fg.count_nodes(fg.trace(lambda a, b, c: fg.sum([a, b, c]))(1.0, 2.0, 3.0)) == 4
    assert fg.count_nodes(fg.trace(lambda a, b, c: sum([a, b, c]))(1.0, 2.0, 3.0)) == 6


def test_dot_is_one_node_with_or_without_bias() -> None:
    out = fg.trace(lambda w1, w2, x1, x2, b: fg.dot([w1, w2], [x1, x2], b))(1.0, 2.0, 3.0, 4.0, 5.0)
    assert out.prim.name == "dot" and out.value == 16.0
    assert fg.count_nodes(out) == 6
    out = fg.trace(lambda w1, w2, x1, x2: fg.dot([w1, w2], [x1, x2]))(1.0, 2.0, 3.0, 4.0)
    assert out.prim.name == "dot" and out.value == 11.0
    assert fg.count_nodes(out) == 5


def test_dot_gradients_with_and_without_bias() -> None:
    gw, gx, gb = fg.grad(lambda ws, xs, b: fg.dot(ws, xs, b), argnums=(0, 1, 2))([1.0, 2.0], [3.0, 4.0], 0.5)
    assert list(gw) == [3.0, 4.0] and list(gx) == [1.0, 2.0] and gb == 1.0
    gw, gx = fg.grad(lambda ws, xs: fg.dot(ws, xs), argnums=(0, 1))([1.0, 2.0], [3.0, 4.0])
    assert list(gw) == [3.0, 4.0] and list(gx) == [1.0, 2.0]
    # A node used as both weight and input, and as the bias: d/dw (w*w + 2w + w*w) = 4w + 2.
    assert fg.grad(lambda w: fg.dot([w, w], [w, 2.0], bias=w * w))(3.0) == 14.0
    assert fg.grad(fg.grad(lambda w: fg.dot([w, w], [w, 2.0], bias=w * w)))(3.0) == 4.0


def test_sum_and_mean_gradients() -> None:
    assert list(fg.grad(fg.sum)([1.0, 2.0, 3.0])) == [1.0, 1.0, 1.0]
    assert list(fg.grad(fg.mean)([1.0, 2.0, 3.0, 4.0])) == [0.25] * 4
    assert fg.grad(lambda x: fg.sum([x, x, 2.0 * x]))(1.0) == 4.0
    assert fg.grad(lambda x: fg.sum([x * x, 1.0]))(3.0) == 6.0


def test_stop_gradient_blocks_derivatives_at_every_order() -> None:
    assert fg.grad(lambda x: x * fg.stop_gradient(x))(3.0) == 3.0
    assert fg.grad(lambda x: fg.stop_gradient(x * x))(3.0) == 0.0
    assert fg.grad(fg.grad(lambda x: x * fg.stop_gradient(x * x)))(3.0) == 0.0
    out = fg.trace(fg.stop_gradient)(2.0)
    assert out.value == 2.0


# Derivatives against central differences, second order ---------------------------------


@pytest.mark.parametrize("name", sorted(UNARY_REFERENCE))
@given(data=st.data())
def test_unary_op_derivatives_to_second_order(name: str, data: Any) -> None:
    op, _ = UNARY_REFERENCE[name]
    x = data.draw(op_inputs(name))
    check_grads(op, (x,), order=2, modes=MODES)


@given(x=floats_in(-3.0, 3.0))
def test_neg_derivatives_to_second_order(x: float) -> None:
    check_grads(lambda a: -a, (x,), order=2, modes=MODES)


everywhere = floats_in(-3.0, 3.0)
away_from_zero = floats_in(-3.0, 3.0).filter(lambda y: abs(y) > 0.2)

BINARY_DOMAINS = {
    "add": (ops.add, everywhere, everywhere),
    "sub": (ops.sub, everywhere, everywhere),
    "mul": (ops.mul, everywhere, everywhere),
    "div": (fg.div, everywhere, away_from_zero),
    "maximum": (fg.maximum, everywhere, everywhere),
    "minimum": (fg.minimum, everywhere, everywhere),
    "power": (fg.power, floats_in(0.2, 4.0), floats_in(-2.5, 2.5)),
    "operator **": (lambda x, y: x**y, floats_in(0.2, 4.0), floats_in(-2.5, 2.5)),
    "operator /": (lambda x, y: x / y, everywhere, away_from_zero),
    "mod": (fg.mod, everywhere, away_from_zero),
    "operator %": (lambda x, y: x % y, everywhere, away_from_zero),
    "floor_divide": (fg.floor_divide, everywhere, away_from_zero),
}


@pytest.mark.parametrize("name", sorted(BINARY_DOMAINS))
@given(data=st.data())
def test_binary_op_derivatives_to_second_order(name: str, data: Any) -> None:
    op, xs, ys = BINARY_DOMAINS[name]
    x, y = data.draw(xs), data.draw(ys)
    if name in ("maximum", "minimum"):
        assume(abs(x - y) > 1e-3)  # the tie is a kink
    if name in ("mod", "operator %", "floor_divide"):
        assume(abs(x / y - round(x / y)) > 1e-3)  # x / y an integer: a jump
    check_grads(op, (x, y), order=2, modes=MODES)


@given(x=floats_in(-3.0, 3.0), c=st.sampled_from([2, 3, 4, -1, -2, 2.0, 3.0]))
def test_power_with_a_constant_integer_exponent_to_second_order_any_sign_of_base(x: float, c: Any) -> None:
    if c < 0:
        assume(abs(x) > 0.3)
    check_grads(lambda a: fg.power(a, c), (x,), order=2, modes=MODES)
    check_grads(lambda a: a**c, (x,), order=2, modes=MODES)


@given(x=floats_in(0.2, 4.0), c=floats_in(-2.5, 2.5))
def test_power_with_a_constant_float_exponent_to_second_order(x: float, c: float) -> None:
    check_grads(lambda a: fg.power(a, c), (x,), order=2, modes=MODES)


@given(xs=st.lists(everywhere, min_size=1, max_size=5))
def test_sum_and_mean_derivatives_to_second_order(xs: list[float]) -> None:
    check_grads(lambda v: fg.sum(v) * fg.sum(v), (xs,), order=2, modes=MODES)
    check_grads(lambda v: fg.mean(v) ** 2, (xs,), order=2, modes=MODES)


@given(
    pairs=st.lists(st.tuples(everywhere, everywhere), min_size=1, max_size=4),
    bias=everywhere,
    with_bias=st.booleans(),
)
def test_dot_derivatives_to_second_order(
    pairs: list[tuple[float, float]], bias: float, with_bias: bool
) -> None:
    ws = [w for w, _ in pairs]
    xs = [x for _, x in pairs]
    if with_bias:
        check_grads(lambda w, x, b: fg.tanh(fg.dot(w, x, b)), (ws, xs, bias), order=2, modes=MODES)
    else:
        check_grads(lambda w, x: fg.tanh(fg.dot(w, x)), (ws, xs), order=2, modes=MODES)


@given(x=floats_in(-2.0, 2.0))
def test_third_order_through_composed_primitives(x: float) -> None:
    check_grads(lambda a: fg.sin(a) * fg.exp(fg.tanh(a)) + fg.sigmoid(a) ** 2, (x,), order=3, modes=MODES)


# IEEE numerics: nan and inf, never a Python exception --------------------------------------


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(
    "text, thunk, expected",
    [
        ("exp(1000)", lambda: fg.exp(1000.0), inf),
        ("exp(-inf)", lambda: fg.exp(-inf), 0.0),
        ("log(0)", lambda: fg.log(0.0), -inf),
        ("log(-1)", lambda: fg.log(-1.0), nan),
        ("log(inf)", lambda: fg.log(inf), inf),
        ("sqrt(-1)", lambda: fg.sqrt(-1.0), nan),
        ("div(1, 0)", lambda: fg.div(1.0, 0.0), inf),
        ("div(-1, 0)", lambda: fg.div(-1.0, 0.0), -inf),
        ("div(1, -0.0)", lambda: fg.div(1.0, -0.0), -inf),
        ("div(0, 0)", lambda: fg.div(0.0, 0.0), nan),
        ("power(0, -1)", lambda: fg.power(0.0, -1.0), inf),
        ("power(-0.0, -1)", lambda: fg.power(-0.0, -1.0), -inf),
        ("power(-8, 1/3)", lambda: fg.power(-8.0, 1.0 / 3.0), nan),
        ("power(-8, 3)", lambda: fg.power(-8.0, 3), -512.0),
        ("power(10, 400)", lambda: fg.power(10.0, 400.0), inf),
        ("power(-10, 401)", lambda: fg.power(-10.0, 401.0), -inf),
        ("sin(inf)", lambda: fg.sin(inf), nan),
        ("cos(inf)", lambda: fg.cos(inf), nan),
        ("sigmoid(-1000)", lambda: fg.sigmoid(-1000.0), 0.0),
        ("sigmoid(1000)", lambda: fg.sigmoid(1000.0), 1.0),
        ("tanh(1000)", lambda: fg.tanh(1000.0), 1.0),
        ("relu(nan)", lambda: fg.relu(nan), nan),
        ("sigmoid(nan)", lambda: fg.sigmoid(nan), nan),
        ("maximum(nan, 1)", lambda: fg.maximum(nan, 1.0), nan),
        ("maximum(1, nan)", lambda: fg.maximum(1.0, nan), nan),
        ("minimum(nan, 1)", lambda: fg.minimum(nan, 1.0), nan),
        ("minimum(1, nan)", lambda: fg.minimum(1.0, nan), nan),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ieee_results_on_floats(text: str, thunk: Any, expected: float) -> None:
    out = thunk()
    assert type(out) is float
    assert same_float(out, expected)


def test_ieee_results_on_nodes_match_floats() -> None:
    out = fg.trace(lambda x: [fg.exp(x * 1000.0), fg.log(x - 1.0), fg.sqrt(-x), 1.0 / (x - 1.0), x / 0.0])(
        1.0
    )
    assert out[0].value == inf
    assert out[1].value == -inf
    assert math.isnan(out[2].value)
    assert out[3].value == inf and out[4].value == inf


# (function, point, first derivative) where the rules themselves meet 0, inf or nan;
# None where IEEE arithmetic leaves more than one defensible answer (only "no
# exception, a float" is required there).
SINGULAR = [
    ("exp at 1000", fg.exp, 1000.0, inf),
    ("log at 0", fg.log, 0.0, inf),
    ("log at -1", fg.log, -1.0, -1.0),
    ("sqrt at -1", fg.sqrt, -1.0, nan),
    ("sqrt at 0", fg.sqrt, 0.0, inf),
    ("div(1, x) at 0", lambda x: fg.div(1.0, x), 0.0, -inf),
    ("1 / x at 0", lambda x: 1.0 / x, 0.0, -inf),
    ("x / 0", lambda x: x / 0.0, 1.0, inf),
    ("power(x, -1) at 0", lambda x: fg.power(x, -1.0), 0.0, -inf),
    ("x ** -1 at 0", lambda x: x**-1, 0.0, -inf),
    ("x ** 0.5 at 0", lambda x: x**0.5, 0.0, inf),
    ("power(x, 1/3) at -8", lambda x: fg.power(x, 1.0 / 3.0), -8.0, nan),
    ("sin at inf", fg.sin, inf, nan),
    ("cos at inf", fg.cos, inf, nan),
    ("power(x, 400) at 10", lambda x: fg.power(x, 400.0), 10.0, inf),
    ("x ** 400.0 at 10", lambda x: x**400.0, 10.0, inf),
    ("power(0, y) at -1", lambda y: fg.power(0.0, y), -1.0, None),
    ("0 ** y at -1", lambda y: 0.0**y, -1.0, None),
    ("power(-8, y) at 1/3", lambda y: fg.power(-8.0, y), 1.0 / 3.0, nan),
    ("power(10, y) at 400", lambda y: fg.power(10.0, y), 400.0, inf),
    ("x ** x at 0", lambda x: x**x, 0.0, None),
    ("x / (x - 1) at 1", lambda x: x / (x - 1.0), 1.0, None),
    ("exp(-x) at -1000", lambda x: fg.exp(-x), -1000.0, -inf),
    ("tanh at 1000", fg.tanh, 1000.0, 0.0),
    ("sigmoid at -1000", fg.sigmoid, -1000.0, 0.0),
    ("sigmoid at 1000", fg.sigmoid, 1000.0, 0.0),
]


@pytest.mark.parametrize("text, f, x, expected", SINGULAR, ids=[c[0] for c in SINGULAR])
def test_ieee_results_under_grad_and_grad_of_grad(text: str, f: Any, x: float, expected: Any) -> None:
    d1 = fg.grad(f)(x)
    assert type(d1) is float
    assert expected is None or same_float(d1, expected)
    d2 = fg.grad(fg.grad(f))(x)
    d3 = fg.grad(fg.grad(fg.grad(f)))(x)
    assert type(d2) is float and type(d3) is float


# Kinks ----------------------------------------------------------------------------------------


def test_relu_derivative_at_zero_is_zero() -> None:
    assert fg.grad(fg.relu)(0.0) == 0.0
    assert fg.grad(fg.relu)(-0.0) == 0.0
    assert fg.grad(fg.grad(fg.relu))(0.0) == 0.0
    assert fg.grad(fg.relu)(1e-300) == 1.0 and fg.grad(fg.relu)(-1e-300) == 0.0


def test_abs_derivative_at_zero_is_zero() -> None:
    assert fg.grad(fg.abs)(0.0) == 0.0
    assert fg.grad(lambda x: abs(x))(0.0) == 0.0
    assert fg.grad(fg.grad(fg.abs))(0.0) == 0.0
    assert fg.grad(fg.abs)(-2.0) == -1.0 and fg.grad(fg.abs)(2.0) == 1.0


def test_maximum_and_minimum_split_a_tie_half_and_half() -> None:
    assert fg.grad(fg.maximum, argnums=(0, 1))(1.0, 1.0) == (0.5, 0.5)
    assert fg.grad(fg.minimum, argnums=(0, 1))(1.0, 1.0) == (0.5, 0.5)
    # Both arguments the same node: the halves add back to 1.
    assert fg.grad(lambda x: fg.maximum(x, x))(2.0) == 1.0
    assert fg.grad(fg.maximum, argnums=(0, 1))(2.0, 1.0) == (1.0, 0.0)
    assert fg.grad(fg.minimum, argnums=(0, 1))(2.0, 1.0) == (0.0, 1.0)


def test_sqrt_derivative_at_zero_is_inf() -> None:
    assert fg.grad(fg.sqrt)(0.0) == inf


@pytest.mark.parametrize(
    "f",
    [lambda x: x**0, lambda x: x**0.0, lambda x: fg.power(x, 0), lambda x: fg.power(x, 0.0)],
    ids=["x ** 0", "x ** 0.0", "power(x, 0)", "power(x, 0.0)"],
)
@pytest.mark.parametrize("x", [0.0, -0.0, 2.0, -3.0])
def test_a_zeroth_power_is_constant_so_its_derivative_is_zero_everywhere(f: Any, x: float) -> None:
    # x ** 0 == 1 for every x (0 ** 0 == 1 in IEEE pow), so d/dx is 0, at 0 too.
    assert f(x) == 1.0
    assert fg.grad(f)(x) == 0.0
    assert fg.grad(fg.grad(f))(x) == 0.0


def test_zero_to_a_positive_power_does_not_depend_on_the_exponent() -> None:
    # 0 ** y == 0 for every y > 0, so d/dy is 0 (numpy/JAX agree); the rule
    # out * log(x) must not turn that into 0 * -inf = nan.
    assert fg.grad(lambda y: 0.0**y)(2.0) == 0.0
    assert fg.grad(lambda y: fg.power(0.0, y))(0.5) == 0.0
    assert fg.grad(lambda x, y: x**y, argnums=(0, 1))(0.0, 2.0) == (0.0, 0.0)
    # a relu that is off, raised to a learnable power, must not poison training
    assert fg.grad(lambda p: fg.relu(-1.0 + 0.0 * p) ** p)(1.5) == 0.0


# A primitive declared from outside the library ----------------------------------------


def _softplus_impl(x: float) -> float:
    # Stable on all reals: log(1 + e^x) = max(x, 0) + log1p(e^-|x|).
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


softplus = fg.Primitive(
    "softplus",
    impl=_softplus_impl,
    vjp=lambda g, out, x: (g * fg.sigmoid(x),),
    jvp=lambda dxs, out, x: dxs[0] * fg.sigmoid(x),
)

# The same function with rules written in terms of its output.
softplus_by_out = fg.Primitive(
    "softplus_by_out",
    impl=_softplus_impl,
    vjp=lambda g, out, x: (g * (1.0 - fg.exp(-out)),),
    jvp=lambda dxs, out, x: dxs[0] * (1.0 - fg.exp(-out)),
)

# Reverse rule only: grad of grad needs nothing else (reverse over reverse).
softplus_vjp_only = fg.Primitive(
    "softplus_vjp_only",
    impl=_softplus_impl,
    vjp=lambda g, out, x: (g * fg.sigmoid(x),),
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_user_primitive_on_floats() -> None:
    assert close(softplus(0.0), math.log(2.0))
    assert close(softplus(1000.0), 1000.0)
    assert type(softplus(1.0)) is float


def test_user_primitive_records_a_node_with_its_name() -> None:
    out = fg.trace(lambda x: softplus(x * 2.0))(1.0)
    assert out.prim is softplus and out.prim.name == "softplus"
    assert close(out.value, _softplus_impl(2.0))


@given(x=floats_in(-5.0, 5.0))
def test_user_primitive_under_grad_and_grad_of_grad_matches_closed_form(x: float) -> None:
    s = _sigmoid(x)
    assert close(fg.grad(softplus)(x), s)
    assert close(fg.grad(fg.grad(softplus))(x), s * (1.0 - s))
    assert close(fg.grad(fg.grad(fg.grad(softplus)))(x), s * (1.0 - s) * (1.0 - 2.0 * s))
    assert close(fg.grad(softplus_by_out)(x), s)
    assert close(fg.grad(fg.grad(softplus_by_out))(x), s * (1.0 - s), 1e-7)
    assert close(fg.grad(softplus_vjp_only)(x), s)
    assert close(fg.grad(fg.grad(softplus_vjp_only))(x), s * (1.0 - s))
    assert close(fg.grad(fg.grad(fg.grad(softplus_vjp_only)))(x), s * (1.0 - s) * (1.0 - 2.0 * s))


@given(x=floats_in(-5.0, 5.0), y=floats_in(-2.0, 2.0))
def test_user_primitive_composes_with_library_ops_to_second_order(x: float, y: float) -> None:
    check_grads(lambda a, b: softplus(a * b) + fg.tanh(softplus(a)), (x, y), order=2, modes=MODES)
    check_grads(lambda a, b: softplus_by_out(a * b), (x, y), order=2, modes=MODES)


def test_user_primitive_grad_agrees_with_numerical_grad() -> None:
    f = lambda p: softplus(p["a"]) * softplus(-p["b"])  # noqa: E731
    params = {"a": 0.3, "b": -1.2}
    analytic = fg.grad(f)(params)
    numeric = numerical_grad(f, params)
    assert close(analytic["a"], numeric["a"], 1e-6) and close(analytic["b"], numeric["b"], 1e-6)
