"""A traced value never silently becomes a plain number, and rounding works.

``float(x)`` (and everything that calls it: ``math.*``, ``math.fsum``,
``numpy.float64``, ``complex``) of a node inside any transform would drop its
derivative, so it raises a TypeError naming the conversion and the fix;
``fg.value_of`` reads the value as a constant on purpose. Comparisons and
``if x > 0:`` keep working. ``round``, ``math.floor``/``ceil``/``trunc``,
``//``, ``%`` and ``divmod`` of nodes are operations with numpy's values and
numpy's and JAX's derivatives.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.testing import check_grads

np = pytest.importorskip("numpy")

TRANSFORMS: dict[str, Callable[[Callable[[Any], Any], float], Any]] = {
    "grad": lambda f, x: fg.grad(f)(x),
    "value_and_grad": lambda f, x: fg.value_and_grad(f)(x),
    "jvp": lambda f, x: fg.jvp(f, (x,), (1.0,)),
    "vjp": lambda f, x: fg.vjp(f, x),
    "linearize": lambda f, x: fg.linearize(f, x),
    "jacobian": lambda f, x: fg.jacobian(f)(x),
    "jacfwd": lambda f, x: fg.jacfwd(f)(x),
    "hessian": lambda f, x: fg.hessian(f)(x),
    "derivatives": lambda f, x: fg.derivatives(f, 2)(x),
    "grad of grad": lambda f, x: fg.grad(fg.grad(f))(x),
    "trace": lambda f, x: fg.trace(f)(x),
    "jit": lambda f, x: fg.jit(f)(x),
    "jit of grad": lambda f, x: fg.jit(fg.grad(f))(x),
    "vmap under grad": lambda f, x: fg.grad(lambda y: fg.sum(fg.vmap(f)([y, y])))(x),
}

CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "float()": lambda x: float(x) * x,
    "math.sin": lambda x: math.sin(x) + x,
    "math.exp": lambda x: math.exp(x) * x,
    "math.fsum": lambda x: math.fsum([x, x]) * x,
    "math.sqrt": lambda x: math.sqrt(x) * x,
    "numpy.float64": lambda x: np.float64(x) * x,
    "complex()": lambda x: complex(x).real * x,
    "'%f' %": lambda x: float("%f" % x) * x,  # noqa: UP031 - the old formatting calls float()
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converting_a_traced_value_to_a_float_raises_under_every_transform(
    transform: str, conversion: str
) -> None:
    with pytest.raises(TypeError, match=r"(float|complex)\(\) of a traced value inside") as info:
        TRANSFORMS[transform](CONVERSIONS[conversion], 0.5)
    message = str(info.value)
    assert "fg.value_of" in message or "static_argnums" in message  # the way out is named


@pytest.mark.parametrize(
    "f, hint",
    [
        (lambda x: math.sin(x), "use fg.sin instead of math.sin"),
        (lambda x: x * math.exp(x), "use fg.exp instead of math.exp"),
        (lambda x: math.log(x) + math.cos(x), "use fg.log instead of math.log"),
        (lambda x: np.float64(x) * 2.0, "fg.sin, fg.exp"),
        (lambda x: math.fabs(x), "use fg.abs instead of math.fabs"),
    ],
)
def test_the_message_names_the_fgrad_op_to_use(f: Callable[[Any], Any], hint: str) -> None:
    with pytest.raises(fg.TraceGuardError, match="would drop its derivative") as info:
        fg.grad(f)(0.5)
    assert hint in str(info.value)
    assert isinstance(info.value, TypeError)


def test_the_message_under_jit_says_the_number_would_be_frozen() -> None:
    with pytest.raises(fg.TraceGuardError, match="frozen into the compiled code"):
        fg.jit(lambda x: math.sin(x))(0.5)
    with pytest.raises(fg.TraceGuardError, match="inside grad would drop its derivative.*stop_gradient"):
        fg.jit(fg.grad(lambda x: math.sin(x)))(0.5)  # the innermost transform speaks


def test_value_of_reads_a_value_as_a_constant() -> None:
    assert fg.value_of(2.5) == 2.5
    assert fg.grad(lambda x: x * fg.value_of(x))(3.0) == 3.0  # d/dx (x * c), c = 3
    seen: list[float] = []
    fg.grad(lambda x: (seen.append(fg.value_of(x * x)), x)[1])(3.0)
    assert seen == [9.0] and type(seen[0]) is float
    assert fg.grad(fg.grad(lambda x: x * x * fg.value_of(x)))(2.0) == 4.0  # cut at every level
    with pytest.raises(fg.TraceGuardError, match=r"fg\.value_of\(\) of a traced value inside jit"):
        fg.jit(lambda x: fg.value_of(x))(1.0)


def test_comparisons_branches_int_and_formatting_keep_working() -> None:
    assert fg.grad(lambda x: x * x if x > 0 else -x)(3.0) == 6.0
    assert fg.grad(lambda x: x * int(x))(2.5) == 2.0  # int() is trunc: derivative 0
    assert fg.grad(lambda x: (x, f"{x:.2f}"), has_aux=True)(1.5)[1] == "1.50"
    assert fg.grad(lambda x: x if bool(x) else 0.0)(1.5) == 1.0
    out = fg.trace(lambda x: x * 2.0)(1.5)
    assert float(out) == 3.0 and math.sin(out) == math.sin(3.0)  # closed nodes are values


# Rounding, floor division and the remainder ---------------------------------

SPECIAL = [
    0.0,
    -0.0,
    0.3,
    -0.3,
    0.5,
    -0.5,
    1.5,
    -1.5,
    2.5,
    7.0,
    -7.5,
    1e300,
    -1e300,
    5e-324,
    math.inf,
    -math.inf,
    math.nan,
    2.0**52 + 1,
    -(2.0**53),
]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _same(got: Any, want: Any) -> bool:
    return type(got) is float and _bits(got) == _bits(float(want))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (math.floor, np.floor),
        (math.ceil, np.ceil),
        (math.trunc, np.trunc),
        (round, np.round),
        (fg.floor, np.floor),
        (fg.ceil, np.ceil),
        (fg.trunc, np.trunc),
        (fg.round, np.round),
    ],
)
def test_the_rounding_family_gives_numpys_values_and_derivative_zero(ours: Any, theirs: Any) -> None:
    for x in SPECIAL:
        out = fg.trace(lambda v: ours(v))(x)
        assert isinstance(out, fg.Expr) and _same(out.value, theirs(x)), (ours, x)
        assert _same(fg.jit(lambda v: ours(v))(x), theirs(x))
        if math.isfinite(x):
            assert fg.grad(lambda v: ours(v) * v)(x) == fg.value_of(ours(x)) + 0.0
            assert fg.jvp(lambda v: ours(v), (x,), (1.0,))[1] == 0.0
    assert _same(fg.round(2.675, 2), round(2.675, 2)) and _same(fg.round(-0.4), -0.0)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda x, y: x // y, np.floor_divide),
        (lambda x, y: x % y, np.mod),
        (fg.floor_divide, np.floor_divide),
        (fg.mod, np.mod),
    ],
)
def test_floor_division_and_remainder_give_numpys_values(ours: Any, theirs: Any) -> None:
    with np.errstate(all="ignore"):
        for x in SPECIAL:
            for y in SPECIAL:
                want = theirs(x, y)
                for got in (
                    fg.trace(ours)(x, y).value,
                    fg.trace(lambda a, y=y: ours(a, y))(x).value,
                    fg.trace(lambda b, x=x: ours(x, b))(y).value,
                ):
                    assert _same(got, want) or (got != got and want != want), (x, y, got, want)
                assert _same(fg.jit(ours)(x, y), want) or (want != want), (x, y)


def test_divmod_of_nodes_is_floor_division_and_remainder() -> None:
    q, r = fg.trace(lambda x, y: divmod(x, y))(7.5, 2.0)
    assert (q.value, r.value) == (3.0, 1.5)
    q, r = fg.trace(lambda y: divmod(7.5, y))(-2.0)
    assert (q.value, r.value) == divmod(7.5, -2.0)


@given(st.floats(-50, 50), st.floats(0.3, 20).flatmap(lambda y: st.sampled_from([y, -y])))
def test_the_remainders_derivatives_are_one_and_minus_floor_of_the_quotient(x: float, y: float) -> None:
    gx, gy = fg.grad(lambda a, b: a % b, argnums=(0, 1))(x, y)
    assert gx == 1.0 and gy == -(x // y)  # x // y: the floor of the exact quotient
    assert fg.grad(lambda a, b: a // b, argnums=(0, 1))(x, y) == (0.0, 0.0)
    assert fg.jvp(lambda a, b: a % b, (x, y), (1.0, 1.0))[1] == 1.0 - (x // y)
    q = x / y
    if abs(q - round(q)) > 1e-3:  # away from a jump, central differences agree
        check_grads(lambda a, b: a % b * a, (x, y), order=2, modes=("fwd", "rev"))


def test_rounding_works_under_jit_and_vmaps_numpy_backend_as_in_the_loop() -> None:
    def f(w: Any, x: Any) -> Any:
        return (
            round(w * x)
            + math.floor(x)
            - math.ceil(w)
            + math.trunc(x * 3.0)
            + (x // w)
            + (x % w)
            + fg.round(x, 1)
        ) * w

    def loss(w: Any, xs: Any, backend: str) -> Any:
        return fg.sum(fg.vmap(f, in_axes=(None, 0), backend=backend)(w, xs))

    xs = [0.25, -1.5, 2.5, 3.75, -0.0, 7.2]
    eager = fg.value_and_grad(loss)(1.7, xs, "loop")
    assert fg.jit(fg.value_and_grad(loss), static_argnums=2)(1.7, xs, "loop") == eager
    batched = fg.jit(fg.value_and_grad(loss), static_argnums=2)
    assert "over the batch" in batched.source(1.7, xs, "auto")
    assert batched(1.7, xs, "auto") == pytest.approx(eager, rel=1e-12)
