"""Compiled code gives the bits eager code gives, at the edges too.

At kinks (relu, abs, maximum, minimum) the rules multiply by the
piecewise-constant derivative, eagerly as in compiled code, so a zero times
an infinite weight is nan in both (as in numpy and JAX), and the sign of a
zero gradient is the same. A nan keeps its sign and payload through compiled
code; the one bound: where two nans of other bits meet in one operation,
which of them survives is CPython's choice, and it changes even between two
runs of the same ``a + b`` before and after the interpreter specializes it
(measured on 3.11 to 3.13), so there both results are nans.
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

INF = math.inf
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 1e300, -1e300, 5e-324, INF, -INF, math.nan]


def bits(tree: Any) -> list[bytes]:
    """The bits of every leaf; every nan alike (see the module doc)."""
    return [b"nan" if x != x else struct.pack("<d", float(x)) for x in fg.tree_leaves(tree)]


def exact_bits(tree: Any) -> list[bytes]:
    return [struct.pack("<d", float(x)) for x in fg.tree_leaves(tree)]


def test_two_nans_meeting_in_one_addition_are_cpythons_choice() -> None:
    plus, minus = math.nan, -math.nan
    seen = {struct.pack("<d", plus + minus) for _ in range(50)}  # the bound above, shown
    assert seen <= {struct.pack("<d", plus), struct.pack("<d", minus)}


@pytest.mark.parametrize(
    "x",
    [
        math.nan,
        -math.nan,
        struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0],
        struct.unpack("<d", bytes.fromhex("0100000000f8ffff"))[0],
    ],
)
def test_one_nan_keeps_its_sign_and_payload_through_compiled_code(x: float) -> None:
    def f(x: Any, w: Any) -> Any:
        return fg.relu(x) * w + fg.maximum(x, 1.0) * 2.0 - fg.tanh(x)  # (abs would flip a nan's sign)

    vg = fg.value_and_grad(f, argnums=(0, 1))
    assert exact_bits(fg.jit(vg)(x, 3.0)) == exact_bits(vg(x, 3.0))
    assert exact_bits(fg.jit(f)(x, 3.0)) == exact_bits(f(x, 3.0))


def _kink_programs() -> dict[str, Callable[..., Any]]:
    return {
        "abs": lambda x, w: w * abs(x),
        "relu": lambda x, w: w * fg.relu(x),
        "maximum": lambda x, w: w * fg.maximum(x, 0.0),
        "minimum": lambda x, w: w * fg.minimum(x, -x),
        "relu chain": lambda x, w: fg.relu(w * fg.relu(x) - 1.0) * w,
        "tie": lambda x, w: fg.maximum(x, w) * w,
        "pow": lambda x, w: w * x**w,
        "mod": lambda x, w: w * (x % 2.0) + x // w,
    }


@pytest.mark.parametrize("name", list(_kink_programs()))
def test_gradients_at_kinks_with_special_weights_are_the_same_eager_and_compiled(name: str) -> None:
    f = _kink_programs()[name]
    vg = fg.value_and_grad(f, argnums=(0, 1))
    jitted = fg.jit(vg)
    for x in SPECIAL:
        for w in SPECIAL:
            assert bits(jitted(x, w)) == bits(vg(x, w)), (name, x, w, vg(x, w), jitted(x, w))


def test_an_infinite_weight_at_the_kink_of_abs_gives_nan_in_both() -> None:
    eager = fg.grad(lambda w, x: w * abs(x), argnums=1)(INF, 0.0)
    compiled = fg.jit(fg.grad(lambda w, x: w * abs(x), argnums=1))(INF, 0.0)
    assert math.isnan(eager) and math.isnan(compiled)  # inf * abs'(0) = inf * 0, as in JAX


def test_the_zero_below_an_inactive_relu_has_the_same_sign_eager_and_compiled() -> None:
    def f(w: Any, x: Any) -> Any:
        return fg.relu(x * w) * -3.0

    for x, w in ((-1.0, 2.0), (1.0, -2.0), (-0.0, 1.0)):
        assert bits(fg.grad(f)(w, x)) == bits(fg.jit(fg.grad(f))(w, x))


special_floats = st.sampled_from(SPECIAL) | st.floats(allow_nan=True, allow_infinity=True)


@given(st.lists(special_floats, min_size=3, max_size=3))
def test_a_small_relu_network_with_special_values_is_the_same_eager_and_compiled(v: list[float]) -> None:
    def loss(p: Any) -> Any:
        h = [fg.relu(fg.dot([p["a"], p["b"]], [1.0, -2.0], bias=p["c"])), abs(p["a"] - p["c"])]
        return fg.sum([fg.maximum(h[0], h[1]) * p["b"], fg.minimum(h[0], 0.5) * p["c"]])

    params = {"a": v[0], "b": v[1], "c": v[2]}
    assert bits(fg.jit(fg.value_and_grad(loss))(params)) == bits(fg.value_and_grad(loss)(params))
    assert bits(fg.jit(fg.grad(fg.grad(lambda a: loss({**params, "a": a}))))(v[0])) == bits(
        fg.grad(fg.grad(lambda a: loss({**params, "a": a})))(v[0])
    )


NAN_A = struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0]
NAN_B = struct.unpack("<d", bytes.fromhex("0200000000f8ffff"))[0]


def test_constants_of_other_bits_are_never_merged_into_one_operation() -> None:
    def f(x: Any) -> Any:
        return [x + NAN_A, x + NAN_B, x * 0.0, x * -0.0, x + 2, x + 2.0]

    assert exact_bits(fg.jit(f)(1.0)) == exact_bits(f(1.0))
    np = pytest.importorskip("numpy")
    xs = np.array([1.0, 2.0, 3.0])

    def example(w: Any, x: Any) -> Any:
        return [w * x + NAN_A, w * x + NAN_B, w * x * 0.0, w * x * -0.0]

    def g(w: Any) -> Any:
        return fg.vmap(example, in_axes=(None, 0))(w, [1.0, 2.0, 3.0])

    assert "over the batch" in fg.jit(g).source(2.0)
    assert exact_bits(fg.jit(g)(2.0)) == exact_bits(g(2.0)) and len(xs) == 3


def test_ints_too_long_for_repr_are_constants_of_compiled_code() -> None:
    huge = 10**5000
    step = fg.jit(lambda x, n: fg.maximum(x, n) > 0, static_argnums=1)
    assert step(1.0, huge) is True
    assert fg.jit(lambda x: (x < huge, x > -huge))(1.0) == (True, True)
