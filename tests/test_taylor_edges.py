"""derivatives(f, n) at the edges: infinities, singular points, every primitive.

The promise checked here: order 0 is exactly f's value, and every derivative
is the one k nested ``grad`` calls give wherever that is not nan, infinities
included. "The one" for finite values means within 1e-9 of the largest
magnitude either computation handles (its own values, the program's
constants, the derivatives of its intermediate values): both round at that
scale, and cancellations (1 + 1e300 - 1e300) leave errors of that size in
either. Where nested grad's inf comes from an intermediate overflow (finite
operands, no pole), a finite Taylor value is not held against it.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.engine.core import Expr
from fgrad.primitives import arith
from fgrad.testing import expressions, floats_in
from fgrad.transforms.graph import reachable

inf, nan = math.inf, math.nan


def nested(f: Any, k: int) -> Any:
    for _ in range(k):
        f = fg.grad(f)
    return f


def value(f: Any, x: float) -> Any:
    out = fg.trace(f)(x)
    return out.value if type(out) is Expr else out


def same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


# Singular points, and their kind --------------------------------------------

CASES = {
    "3 exp(x) at 1000": (lambda x: 3.0 * fg.exp(x), 1000.0, [inf] * 5),
    "2 log(x) at -1": (lambda x: 2.0 * fg.log(x), -1.0, [nan, -2.0, -2.0, -4.0, -12.0]),
    "3 / x at 0": (lambda x: 3.0 / x, 0.0, [inf, -inf, inf, -inf, inf]),
    "3 / x at -0.0": (lambda x: 3.0 / x, -0.0, [-inf, -inf, -inf, -inf, -inf]),
    "3 sqrt(x) at 0": (lambda x: 3.0 * fg.sqrt(x), 0.0, [0.0, inf, -inf, inf, -inf]),
    "x ** 1.5 at 0": (lambda x: x**1.5, 0.0, [0.0, 0.0, inf, -inf, inf]),
    "x ** 2.5 at 0": (lambda x: x**2.5, 0.0, [0.0, 0.0, 0.0, inf, -inf]),
    "(-2) ** x at 3": (lambda x: (-2.0) ** x, 3.0, [-8.0, nan, nan, nan, nan]),
    "log(x) at 0": (lambda x: fg.log(x), 0.0, [-inf, inf, -inf, inf, -inf]),
    "x ** -2 at 0": (lambda x: x**-2, 0.0, [inf, -inf, inf, -inf, inf]),
    "exp(x) - 1 at 800": (lambda x: fg.exp(x) - 1.0, 800.0, [inf] * 5),
    "x * x at 1e300": (lambda x: x * x, 1e300, [inf, 2e300, 2.0, 0.0, 0.0]),
    "x ** 2.5 at 1e300": (lambda x: x**2.5, 1e300, [inf, inf, 3.75e150, 1.875e-150, -9.375e-451]),
    "exp(x) * x at 0 (an input with exact zeros)": (lambda x: fg.exp(x) * x, 0.0, [0.0, 1.0, 2.0, 3.0, 4.0]),
    "0 ** x at 2": (lambda x: fg.power(0.0, x), 2.0, [0.0, 0.0, 0.0, 0.0, 0.0]),
    "stop_gradient(x) exp(x) at 1000": (lambda x: fg.stop_gradient(x) * fg.exp(x), 1000.0, [inf] * 5),
    # u + x u, u shared: nested grad adds u's cotangents, 1 + x, before it multiplies by
    # u's third derivative, inf; the series has 1 * inf + 0 * inf. (Order 4: nan in both.)
    "(1 + x) x ** 2.5 at 0": (lambda x: (lambda u: u + x * u)(x**2.5), 0.0, [0.0, 0.0, 0.0, inf, nan]),
}


@pytest.mark.parametrize("name", CASES)
def test_derivatives_at_singular_points(name: str) -> None:
    f, x, want = CASES[name]
    got = fg.derivatives(f, 4)(x)
    assert all(same(a, b) or math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, want)), (got, want)
    assert same(got[0], value(f, x))
    for k in range(1, 5):
        g = nested(f, k)(x)
        assert same(got[k], g) or math.isclose(got[k], g, rel_tol=1e-12) or g != g, (k, got[k], g)


def test_order_zero_is_the_value_even_where_the_series_of_exp_log_would_differ() -> None:
    # exp(y log x) would give nan for a negative base; the value is -8.
    assert fg.derivatives(lambda x: (-2.0) ** x, 0)(3.0) == [-8.0]
    assert fg.derivatives(lambda x: x**x, 1)(2.0)[0] == 4.0


def test_an_order_beyond_the_float_range_of_factorials_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 170"):
        fg.derivatives(fg.exp, 171)
    assert len(fg.derivatives(lambda x: x * x, 170)(1.0)) == 171


def test_a_constant_result_is_a_float() -> None:
    assert fg.derivatives(lambda x: 3, 2)(1.0) == [3.0, 0.0, 0.0]


# User primitives: rules of any arity, and exact series without one --------------


def _taylor_times(a: list[Any], b: list[Any]) -> list[Any]:
    return [fg.sum([a[i] * b[k - i] for i in range(k + 1)]) for k in range(len(a))]


times = fg.Primitive("times", impl=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y, g * x))
times_ruled = fg.Primitive(
    "times_ruled", impl=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y, g * x), taylor=_taylor_times
)
fma = fg.Primitive(
    "fma",
    impl=lambda x, y, z: x * y + z,
    vjp=lambda g, out, x, y, z: (g * y, g * x, g),
    jvp=lambda dxs, out, x, y, z: dxs[0] * y + x * dxs[1] + dxs[2],
)
softplus = fg.Primitive(
    "softplus",
    impl=lambda x: math.log1p(math.exp(x)),
    vjp=lambda g, out, x: (g * fg.sigmoid(x),),
)
only_jvp = fg.Primitive(
    "only_jvp", impl=lambda x, y: x * y, jvp=lambda dxs, out, x, y: dxs[0] * y + x * dxs[1]
)

USERS = {
    "arity 1": lambda x: softplus(fg.sin(x)) * x,
    "arity 2": lambda x: times(fg.sin(x), fg.exp(x)) + times(x, 2.0),
    "arity 2 with a rule": lambda x: times_ruled(fg.sin(x), fg.exp(x)) + times_ruled(x, 2.0),
    "arity 3": lambda x: fma(fg.sin(x), fg.exp(x), x * x) * fma(x, 3.0, 1.0),
    "arity 3 of one input": lambda x: fma(x, x, x),
}


@pytest.mark.parametrize("name", USERS)
@pytest.mark.parametrize("x", [0.3, -1.1])
def test_user_primitives_match_nested_grad_to_order_6(name: str, x: float) -> None:
    f = USERS[name]
    got = fg.derivatives(f, 6)(x)
    want = [value(f, x)] + [nested(f, k)(x) for k in range(1, 7)]
    assert got[0] == want[0]
    assert all(math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-12) for a, b in zip(got, want)), (got, want)


def test_a_primitive_with_only_a_jvp_rule_is_derived_by_forward_mode() -> None:
    got = fg.derivatives(lambda x: only_jvp(fg.sin(x), x), 4)(0.5)
    want = fg.derivatives(lambda x: fg.sin(x) * x, 4)(0.5)
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, want))


def test_the_exact_series_makes_no_zero_times_inf_from_its_input() -> None:
    # softplus of a series with infinite coefficients: 1 * inf, never 0 * inf.
    f = lambda x: softplus(fg.exp(x))  # noqa: E731
    got = fg.derivatives(f, 3)(1000.0)
    assert got[:2] == [inf, inf]
    assert all(same(a, nested(f, k)(1000.0)) for k, a in enumerate(got) if k)


def test_user_primitives_under_grad_jit_and_jvp() -> None:
    f = USERS["arity 3"]
    third = fg.grad(lambda x: fg.derivatives(f, 2)(x)[2])(0.3)
    assert math.isclose(third, fg.derivatives(f, 3)(0.3)[3], rel_tol=1e-12)
    assert math.isclose(fg.jvp(lambda x: fg.derivatives(f, 2)(x)[2], (0.3,), (1.0,))[1], third, rel_tol=1e-12)
    compiled = fg.jit(fg.derivatives(f, 5))
    for x in (0.3, -0.4):
        assert compiled(x) == fg.derivatives(f, 5)(x)


def test_a_taylor_rule_is_used_and_its_c0_is_the_value() -> None:
    calls: list[int] = []

    def rule(a: list[Any]) -> list[Any]:
        calls.append(len(a))
        return [123.0] + [2.0 * c for c in a[1:]]

    double = fg.Primitive("double", impl=lambda x: 2.0 * x, taylor=rule)
    assert fg.derivatives(lambda x: double(x * x), 3)(1.5) == [4.5, 6.0, 4.0, 0.0]
    assert calls == [4]


def test_a_rule_in_TAYLOR_RULES_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from fgrad.transforms import taylor

    monkeypatch.setitem(taylor.TAYLOR_RULES, times, _taylor_times)
    got = fg.derivatives(lambda x: times(x, x), 3)(2.0)
    assert got == [4.0, 4.0, 2.0, 0.0]


@pytest.mark.parametrize(
    ("rule", "shown"),
    [
        (lambda a: a[:-1], "a list of 3"),
        (lambda a: None, "a NoneType"),
        (lambda a: [a[0], "1", 0.0, 0.0], "a str at index 1"),
        (lambda a: [a[0], True, 0.0, 0.0], "a bool at index 1"),
    ],
)
def test_a_taylor_rule_returning_the_wrong_thing_is_named(rule: Any, shown: str) -> None:
    bad = fg.Primitive("bad", impl=lambda x: x, taylor=rule)
    with pytest.raises(
        TypeError,
        match=rf"Taylor rule of primitive 'bad' \(its taylor=\) returned {shown}; "
        r"it must return a list of 4 coefficients",
    ):
        fg.derivatives(lambda x: bad(x), 3)(1.0)


def test_a_primitive_without_any_rule_is_named() -> None:
    bare = fg.Primitive("bare", impl=lambda x, y: x + y)
    with pytest.raises(TypeError, match="primitive 'bare' has no Taylor rule, and no vjp or jvp rule"):
        fg.derivatives(lambda x: bare(x, x), 2)(1.0)


def test_inputs_are_not_mutated_by_a_rule() -> None:
    seen: list[list[Any]] = []

    def rule(a: list[Any]) -> list[Any]:
        seen.append(a)
        a[1] = 99.0  # a rule's own list: the series it was made from is untouched
        return list(a)

    ident = fg.Primitive("ident", impl=lambda x: x, taylor=rule)
    assert fg.derivatives(lambda x: ident(x) + x, 2)(1.0) == [2.0, 100.0, 0.0]


# Random programs over every built-in primitive ------------------------------------

UNARY: dict[str, Any] = {
    "exp": fg.exp,
    "log": fg.log,
    "sqrt": fg.sqrt,
    "tanh": fg.tanh,
    "sigmoid": fg.sigmoid,
    "sin": fg.sin,
    "cos": fg.cos,
    "relu": fg.relu,
    "abs": abs,
    "neg": lambda a: -a,
    "square": lambda a: a**2,
    "cube": lambda a: fg.power(a, 3),
    "pow_0.5": lambda a: fg.power(a, 0.5),
    "pow_1.5": lambda a: fg.power(a, 1.5),
    "pow_2.5": lambda a: fg.power(a, 2.5),
    "pow_-1": lambda a: fg.power(a, -1),
    "pow_-2": lambda a: fg.power(a, -2.0),
    "pow_0": lambda a: fg.power(a, 0),
    "recip": lambda a: fg.div(1.0, a),
    "two_pow": lambda a: fg.power(2.0, a),
    "neg_two_pow": lambda a: fg.power(-2.0, a),
    "stop_gradient": fg.stop_gradient,
    "shift": lambda a: a - 1.0,
    "times_zero": lambda a: a * 0.0,
    "minus_itself": lambda a: a - a,
    "floor": fg.floor,
    "round": round,
    # rule primitives on the tape: step, sign, share, pow_log
    "d_relu": lambda a: fg.grad(fg.relu)(a),
    "d_abs": lambda a: fg.grad(abs)(a),
    "d_max": lambda a: fg.grad(lambda u: fg.maximum(u, 0.5))(a),
    "d_pow_y": lambda a: fg.grad(lambda y: fg.power(a, y))(a),
}
BINARY: dict[str, Any] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": fg.div,
    "pow": fg.power,
    "maximum": fg.maximum,
    "minimum": fg.minimum,
    "sum": lambda a, b: fg.sum([a, b, a * b]),
    "dot": lambda a, b: fg.dot([a, b], [b, 0.5], bias=0.1),
    "mod": lambda a, b: a % (b * b + 0.5),
    "floor_divide": fg.floor_divide,
}
SPECIAL = [0.0, -0.0, -1.0, -2.5, 1.0, 2.0, 1e300, -1e300, 800.0, -800.0]


class Program:
    def __init__(self, steps: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        self.steps = steps

    def __call__(self, x: Any) -> Any:
        values = [x]
        for op, idx in self.steps:
            values.append((UNARY.get(op) or BINARY[op])(*(values[i] for i in idx)))
        return values[-1]

    def __repr__(self) -> str:
        return f"Program({self.steps})"


@st.composite
def programs(draw: Any, max_steps: int = 6, leave_out: frozenset[str] = frozenset()) -> Program:
    unary, binary = sorted(set(UNARY) - leave_out), sorted(set(BINARY) - leave_out)
    steps = []
    for k in range(draw(st.integers(1, max_steps))):
        pick = st.integers(0, k)
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(unary)), (draw(pick),)))
        else:
            steps.append((draw(st.sampled_from(binary)), (draw(pick), draw(pick))))
    return Program(tuple(steps))


POINTS = st.one_of(st.sampled_from(SPECIAL), floats_in(-3.0, 3.0))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _plain(a: Any) -> Any:
    return a.value if type(a) is Expr else a


# Which argument is 0 at a primitive's pole.
POLE_AT = {arith.div: 1, arith.log: 0, arith.pow_const: 0, arith.pow_: 0, arith.pow_log: 1}


def _overflowed(node: Expr) -> bool:
    """inf from finite operands, not at a pole (division by 0, log(0), 0 ** -1)."""
    args = [_plain(a) for a in node.args]
    if not (isinstance(node.value, float) and math.isinf(node.value)) or not all(map(_finite, args)):
        return False
    return node.prim not in POLE_AT or args[POLE_AT[node.prim]] != 0


def _graph(f: Any, x: float) -> list[Expr]:
    out = fg.trace(f)(x)
    return reachable([out]) if type(out) is Expr else []


def _scale(nodes: list[Expr]) -> float:
    values = [n.value for n in nodes] + [a for n in nodes for a in n.args if type(a) is not Expr]
    return max([1.0] + [abs(v) for v in values if _finite(v)])


def agrees(f: Program, x: float, order: int) -> None:
    got = fg.derivatives(f, order)(x)
    assert same(got[0], value(f, x)), (got[0], value(f, x))  # (on floats, ** may raise)
    scale = _scale(_graph(f, x))
    for m in range(1, len(f.steps) + 1):
        scale = max([scale] + [abs(v) for v in fg.derivatives(Program(f.steps[:m]), order)(x) if _finite(v)])
    for k in range(1, order + 1):
        want, nodes = nested(f, k)(x), _graph(nested(f, k), x)
        tol = 1e-9 * max(scale, _scale(nodes))
        if want != want:
            continue
        if math.isinf(want):
            assert got[k] == want or (_finite(got[k]) and any(map(_overflowed, nodes))), (k, got, want)
        else:
            assert _finite(got[k]) and abs(got[k] - want) <= tol * 1.0 + 1e-9 * abs(want), (k, got, want, tol)


@given(programs(), POINTS)
def test_derivatives_agree_with_nested_grad_on_programs_of_every_primitive(f: Program, x: float) -> None:
    agrees(f, x, 4)


FOUND = [
    # exp(b log a) cancelled log's large coefficients near a = 0: f'' was 0.0 for -249.7.
    (Program((("exp", (0,)), ("pow", (0, 1)))), 2.2258191693909766e-55),
    # y_0 (a_1 / a_0) ** 4 overflowed where the 4th coefficient does not: -inf for -7.3e304.
    (Program((("add", (0, 0)), ("pow_0.5", (0,)), ("add", (0, 2)))), 7.741506022805106e-88),
    (Program((("pow_0.5", (0,)),)), 7.7e-88),
    # (w a_j) y_{k-j} / a_0 overflowed at 1e300 where (w a_j / a_0) y_{k-j} does not.
    (Program((("pow_1.5", (0,)),)), 1e300),
    # sqrt's 4th coefficient overflows at 2.7e-108, x sqrt(x)'s does not: -inf for 4.9e268.
    (Program((("sqrt", (0,)), ("add", (0, 0)), ("dot", (1, 0)))), 2.6544142204662596e-108),
]


@pytest.mark.parametrize(("f", "x"), FOUND)
def test_cases_the_property_found(f: Program, x: float) -> None:
    agrees(f, x, 4)
    got = fg.derivatives(f, 4)(x)
    assert all(
        same(got[k], nested(f, k)(x)) or math.isclose(got[k], nested(f, k)(x), rel_tol=1e-9)
        for k in range(1, 5)
    ), got


def bits(xs: list[Any]) -> list[bytes]:
    # Every bit but a nan's sign and payload, which IEEE leaves unspecified (math.nan
    # is positive, x86's inf - inf negative; fgrad's eager and compiled grad differ there).
    return [b"nan" if v != v else struct.pack("<d", float(v)) for v in xs]


@given(st.one_of(programs(), expressions(n_inputs=1, max_steps=6)), POINTS)
def test_jit_of_derivatives_equals_derivatives_bit_for_bit(f: Any, x: float) -> None:
    compiled = fg.jit(fg.derivatives(f, 5))
    assert bits(compiled(x)) == bits(fg.derivatives(f, 5)(x)), f
    assert bits(compiled(x)) == bits(fg.derivatives(f, 5)(x)), f  # the cached path too
