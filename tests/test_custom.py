"""custom_vjp and custom_jvp: JAX's protocol, nesting with every transform, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given

import fgrad as fg
from fgrad.testing import check_grads, floats_in


def close(a: float, b: float, tol: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def plain_log1pexp(x: Any) -> Any:
    return fg.log(1.0 + fg.exp(x))


# A numerically stable log1pexp by a custom reverse rule ...
@fg.custom_vjp
def log1pexp_vjp(x: Any) -> Any:
    return fg.log(1.0 + fg.exp(x))


def _fwd(x: Any) -> tuple[Any, tuple[Any, ...]]:
    return log1pexp_vjp(x), (x,)


def _bwd(res: tuple[Any, ...], g: Any) -> tuple[Any, ...]:
    (x,) = res
    return (g * fg.sigmoid(x),)


log1pexp_vjp.defvjp(_fwd, _bwd)


# ... and by a custom forward rule.
@fg.custom_jvp
def log1pexp_jvp(x: Any) -> Any:
    return fg.log(1.0 + fg.exp(x))


@log1pexp_jvp.defjvp
def _log1pexp_rule(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    (x,), (dx,) = primals, tangents
    return log1pexp_jvp(x), dx * fg.sigmoid(x)


# Two inputs: hypot with rules of both kinds.
@fg.custom_vjp
def hypot_vjp(x: Any, y: Any) -> Any:
    return fg.sqrt(x * x + y * y)


hypot_vjp.defvjp(
    lambda x, y: (hypot_vjp(x, y), (x, y, hypot_vjp(x, y))),
    lambda res, g: (g * res[0] / res[2], g * res[1] / res[2]),
)


@fg.custom_jvp
def hypot_jvp(x: Any, y: Any) -> Any:
    return fg.sqrt(x * x + y * y)


@hypot_jvp.defjvp
def _hypot_rule(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    (x, y), (dx, dy) = primals, tangents
    out = hypot_jvp(x, y)
    return out, (x * dx + y * dy) / out


LOG1PEXP = [log1pexp_vjp, log1pexp_jvp]
HYPOT = [hypot_vjp, hypot_jvp]
ids = ["custom_vjp", "custom_jvp"]


def test_plain_log1pexp_has_a_nan_gradient_at_1000() -> None:
    assert math.isnan(fg.grad(plain_log1pexp)(1000.0))


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_stable_log1pexp_has_gradient_one_at_1000(f: Any) -> None:
    assert fg.grad(f)(1000.0) == 1.0
    assert fg.value_and_grad(f)(0.0) == (math.log(2.0), 0.5)
    assert fg.jvp(f, (1000.0,), (3.0,))[1] == 3.0
    assert fg.jit(fg.grad(f))(1000.0) == 1.0
    assert fg.jit(fg.grad(f))(-1000.0) == 0.0


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_custom_rules_work_on_plain_floats(f: Any) -> None:
    assert f(0.0) == math.log(2.0)
    assert type(f(1.0)) is float


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_custom_rules_under_grad_of_grad_and_jvp(f: Any) -> None:
    x = 1.0
    s = sigmoid(x)
    assert close(fg.grad(f)(x), s)
    assert close(fg.grad(fg.grad(f))(x), s * (1 - s))
    assert close(fg.grad(fg.grad(fg.grad(f)))(x), s * (1 - s) * (1 - 2 * s))
    out, dout = fg.jvp(f, (x,), (2.0,))
    assert close(out, math.log1p(math.exp(x))) and close(dout, 2.0 * s)
    assert close(fg.jvp(fg.grad(f), (x,), (1.0,))[1], s * (1 - s))
    assert close(fg.grad(lambda x: fg.jvp(f, (x,), (1.0,))[1])(x), s * (1 - s))
    # At 1000 the stable rule keeps the second derivative finite (sigmoid' ~ 0).
    assert fg.grad(fg.grad(f))(1000.0) == 0.0


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_custom_rules_under_jit_are_bit_for_bit_eager(f: Any) -> None:
    def loss(p: Any) -> Any:
        return f(p["w"] * 2.0 + p["b"]) * p["w"]

    step = fg.jit(fg.value_and_grad(loss))
    for p in ({"w": 0.5, "b": -1.0}, {"w": -0.25, "b": 3.0}, {"w": 600.0, "b": 1.0}):
        assert step(p) == fg.value_and_grad(loss)(p)
    assert step.cache_info().traces == 1
    assert fg.jit(fg.grad(fg.grad(f)))(0.5) == fg.grad(fg.grad(f))(0.5)


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_custom_rules_under_hessian(f: Any) -> None:
    def loss(p: Any) -> Any:
        return f(p[0] * p[1])

    x, y = 1.0, 2.0
    s = sigmoid(x * y)
    point = [x, y]
    h = fg.hessian(loss)(point)
    assert close(h[0][0], y * y * s * (1 - s))
    assert close(h[1][1], x * x * s * (1 - s))
    assert close(h[0][1], s + x * y * s * (1 - s))
    assert h[0][1] == h[1][0]
    assert fg.jit(fg.hessian(loss))(point) == h


@pytest.mark.parametrize("f", LOG1PEXP + HYPOT, ids=ids * 2)
def test_custom_rules_in_jacobians(f: Any) -> None:
    g = (lambda x: f(x, 2.0 * x + 1.0)) if f in HYPOT else f
    want = fg.grad(g)(0.4)
    assert fg.jacfwd(g)(0.4) == pytest.approx(want, rel=1e-12)
    assert fg.jacrev(g)(0.4) == want


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
def test_custom_rules_in_taylor_mode(f: Any) -> None:
    # A custom function of one input has no Taylor rule: derivatives composes its own
    # derivatives at the point (nested grad of the rules) with its argument's series.
    g = lambda x: f(fg.sin(x)) * x  # noqa: E731
    got = fg.derivatives(g, 4)(0.4)
    want = [g(0.4), fg.grad(g)(0.4), fg.grad(fg.grad(g))(0.4), fg.grad(fg.grad(fg.grad(g)))(0.4)]
    assert got[:4] == pytest.approx(want, rel=1e-12)
    assert got[4] == pytest.approx(fg.grad(fg.grad(fg.grad(fg.grad(g))))(0.4), rel=1e-12)


@pytest.mark.parametrize("f", HYPOT, ids=ids)
def test_taylor_mode_of_a_custom_function_of_two_inputs_derives_its_series(f: Any) -> None:
    # Every transform means every transform: no Taylor rule, any arity.
    g = lambda x: f(x, 2.0 * x + 1.0)  # noqa: E731
    got = fg.derivatives(g, 4)(0.4)
    want, h = [g(0.4)], g
    for _ in range(4):
        h = fg.grad(h)
        want.append(h(0.4))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("f", LOG1PEXP, ids=ids)
@given(floats_in(-5.0, 5.0))
def test_check_grads_of_custom_log1pexp(f: Any, x: float) -> None:
    check_grads(f, (x,), order=2, modes=("fwd", "rev"))
    check_grads(lambda a: f(fg.sin(a)) * a, (x,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("f", HYPOT, ids=ids)
@given(floats_in(0.5, 4.0), floats_in(-4.0, -0.5))
def test_check_grads_of_custom_hypot(f: Any, x: float, y: float) -> None:
    check_grads(f, (x, y), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("f", HYPOT, ids=ids)
def test_custom_functions_of_two_inputs(f: Any) -> None:
    assert f(3.0, 4.0) == 5.0
    assert fg.grad(f, argnums=(0, 1))(3.0, 4.0) == (0.6, 0.8)
    assert fg.jvp(f, (3.0, 4.0), (1.0, 1.0)) == (5.0, pytest.approx(1.4))
    _, f_vjp = fg.vjp(f, 3.0, 4.0)
    assert f_vjp(2.0) == (pytest.approx(1.2), pytest.approx(1.6))
    # Only one input differentiated: the other is a constant.
    assert fg.grad(lambda y: f(3.0, y))(4.0) == 0.8


def test_custom_vjp_forward_mode_comes_from_bwd_and_custom_jvp_reverse_from_the_rule() -> None:
    calls: list[str] = []

    @fg.custom_vjp
    def f(x: Any) -> Any:
        return x * x

    def fwd(x: Any) -> Any:
        calls.append("fwd")
        return f(x), (x,)

    def bwd(res: Any, g: Any) -> Any:
        calls.append("bwd")
        return (g * 100.0 * res[0],)  # deliberately not 2x: the rule is what is used

    f.defvjp(fwd, bwd)
    assert fg.grad(f)(3.0) == 300.0
    assert fg.jvp(f, (3.0,), (1.0,)) == (9.0, 300.0)
    assert "bwd" in calls

    @fg.custom_jvp
    def h(x: Any) -> Any:
        return x * x

    h.defjvp(lambda primals, tangents: (h(primals[0]), tangents[0] * 7.0))
    assert fg.jvp(h, (3.0,), (2.0,)) == (9.0, 14.0)
    assert fg.grad(h)(3.0) == 7.0


def test_custom_functions_keep_their_name_and_doc() -> None:
    @fg.custom_vjp
    def named(x: Any) -> Any:
        """Doc."""
        return x

    assert named.__name__ == "named" and named.__doc__ == "Doc."


# errors -------------------------------------------------------------------------------------


def _vjp_function(fwd: Any, bwd: Any, n: int = 1) -> Any:
    if n == 1:

        @fg.custom_vjp
        def one(x: Any) -> Any:
            return x * 2.0

        one.defvjp(fwd, bwd)
        return one

    @fg.custom_vjp
    def two(x: Any, y: Any) -> Any:
        return x * y

    two.defvjp(fwd, bwd)
    return two


def test_bwd_returning_the_wrong_number_of_cotangents() -> None:
    f = _vjp_function(lambda x, y: (x * y, (x, y)), lambda res, g: (g * res[1],), n=2)
    message = r"bwd rule of custom_vjp function 'two' returned a tuple of 1.*2 input"
    with pytest.raises(TypeError, match=message):
        fg.grad(f)(1.0, 2.0)
    with pytest.raises(TypeError, match="returned a tuple of 1"):
        fg.jvp(f, (1.0, 2.0), (1.0, 0.0))


def test_bwd_returning_a_non_tuple() -> None:
    f = _vjp_function(lambda x: (x * 2.0, ()), lambda res, g: g * 2.0)
    with pytest.raises(TypeError, match=r"bwd rule .*'one' returned a float.*one cotangent per input"):
        fg.grad(f)(1.0)


def test_bwd_returning_a_non_number_cotangent() -> None:
    f = _vjp_function(lambda x: (x * 2.0, ()), lambda res, g: ("two",))
    with pytest.raises(TypeError, match="cotangent of type str"):
        fg.grad(f)(1.0)


def test_fwd_not_returning_a_pair() -> None:
    f = _vjp_function(lambda x: x * 2.0, lambda res, g: (g * 2.0,))
    message = r"fwd rule of custom_vjp function 'one' must return \(out, residuals\)"
    with pytest.raises(TypeError, match=message):
        fg.grad(f)(1.0)
    g = _vjp_function(lambda x: (x * 2.0, (), "extra"), lambda res, g: (g * 2.0,))
    with pytest.raises(TypeError, match=r"must return \(out, residuals\), got tuple"):
        fg.grad(g)(1.0)


def test_calling_before_defvjp_or_defjvp() -> None:
    @fg.custom_vjp
    def no_rules(x: Any) -> Any:
        return x

    @fg.custom_jvp
    def no_rule(x: Any) -> Any:
        return x

    with pytest.raises(TypeError, match=r"'no_rules' has no rules yet: call no_rules.defvjp\(fwd, bwd\)"):
        no_rules(1.0)
    with pytest.raises(TypeError, match="no rules yet"):
        fg.grad(no_rules)(1.0)
    with pytest.raises(TypeError, match=r"'no_rule' has no rule yet: call no_rule.defjvp\(rule\)"):
        no_rule(1.0)
    with pytest.raises(TypeError, match="no rule yet"):
        fg.jvp(no_rule, (1.0,), (1.0,))


def test_jvp_rule_not_returning_a_pair() -> None:
    @fg.custom_jvp
    def f(x: Any) -> Any:
        return x

    f.defjvp(lambda primals, tangents: tangents[0])
    message = r"jvp rule of custom_jvp function 'f' must return \(out, out_tangent\)"
    with pytest.raises(TypeError, match=message):
        fg.jvp(f, (1.0,), (1.0,))
    with pytest.raises(TypeError, match=r"must return \(out, out_tangent\)"):
        fg.grad(f)(1.0)


def test_rules_must_be_functions_and_results_scalars() -> None:
    @fg.custom_vjp
    def f(x: Any) -> Any:
        return [x]

    with pytest.raises(TypeError, match="fwd and bwd must be functions"):
        f.defvjp(1.0, None)  # type: ignore[arg-type]
    f.defvjp(lambda x: (f(x), ()), lambda res, g: (g,))
    with pytest.raises(TypeError, match="must return one scalar"):
        f(1.0)

    @fg.custom_jvp
    def h(x: Any) -> Any:
        return x

    with pytest.raises(TypeError, match="the rule must be a function"):
        h.defjvp("rule")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function"):
        fg.custom_vjp(3.0)  # type: ignore[arg-type]
