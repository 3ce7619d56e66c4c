"""Reliability: differential fuzzing of the transforms against each other,
nan debugging, threads and re-entrancy, flat memory over many calls."""

from __future__ import annotations

import gc
import math
import struct
import threading
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.testing import check_grads, expressions, floats_in

POINT = st.tuples(floats_in(-2.0, 2.0), floats_in(-2.0, 2.0))


def bits(x: float) -> bytes:
    return struct.pack("<d", float(x))


# Differential fuzzing -------------------------------------------------------


@given(expressions(n_inputs=2), POINT)
def test_jit_equals_eager_bit_for_bit_on_random_programs(f, point):
    eager = fg.value_and_grad(f, argnums=(0, 1))
    compiled = fg.jit(eager)
    for x in (point, (point[1], point[0]), (-point[0], 0.5 * point[1])):  # exercise guards
        (v1, g1), (v2, g2) = compiled(*x), eager(*x)
        assert [bits(v) for v in (v1, *g1)] == [bits(v) for v in (v2, *g2)], f


@given(expressions(n_inputs=2), POINT, POINT)
def test_jvp_and_vjp_satisfy_the_inner_product_identity(f, point, direction):
    out, f_vjp = fg.vjp(f, *point)
    _, along = fg.jvp(f, point, direction)
    cts = f_vjp(1.0)
    inner = sum(c * d for c, d in zip(cts, direction))
    assert inner == pytest.approx(along, rel=1e-9, abs=1e-9)


@given(expressions(n_inputs=2, max_steps=5), POINT)
def test_random_programs_check_to_third_order_in_both_modes(f, point):
    check_grads(f, point, order=3, modes=("fwd", "rev"), atol=1e-4, rtol=1e-3)


@given(expressions(n_inputs=1, max_steps=5), floats_in(-2.0, 2.0))
def test_taylor_derivatives_match_nested_grad_on_random_programs(f, x):
    g = lambda y: f(y)  # noqa: E731 - a one-input function for nesting
    nested = [g(x)]
    for _ in range(3):
        g = fg.grad(g)
        nested.append(g(x))
    assert fg.derivatives(f, order=3)(x) == pytest.approx(nested, rel=1e-8, abs=1e-8)


# NaN debugging --------------------------------------------------------------


def test_debug_nans_names_the_forward_primitive_its_inputs_and_the_line():
    with fg.debug_nans(), pytest.raises(fg.NanError) as info:
        fg.grad(lambda x: fg.log(x - 3.0))(1.0)
    message = str(info.value)
    assert "log produced nan from inputs (-2.0,)" in message
    assert "test_reliability.py" in message


def test_debug_nans_catches_the_reverse_pass():
    # sqrt'(0) = inf, then the mul rule makes inf * 0 = nan in the reverse pass.
    with fg.debug_nans(), pytest.raises(fg.NanError, match=r"mul \(vjp rule\) produced nan"):
        fg.grad(lambda x: fg.sqrt(x * x))(0.0)


def test_debug_nans_ignores_nan_that_came_in_and_is_off_by_default():
    assert math.isnan(fg.grad(lambda x: fg.sqrt(x))(-1.0))  # off: nan propagates
    with fg.debug_nans():
        assert math.isnan(fg.exp(math.nan))  # a nan input is not a new nan
    fg.set_debug_nans(True)
    try:
        with pytest.raises(fg.NanError):
            fg.sqrt(-1.0)
    finally:
        fg.set_debug_nans(False)
    assert math.isnan(fg.sqrt(-1.0))


# Threads and re-entrancy ---------------------------------------------------------


def _work(k: int) -> tuple[float, ...]:
    f = lambda x: fg.tanh(x * x + k) * fg.sin(x)  # noqa: E731
    jitted = _JITTED
    return (fg.grad(f)(0.3 + k), fg.grad(fg.grad(f))(0.1 * k), jitted(0.2 * k)[1])


_JITTED = fg.jit(fg.value_and_grad(lambda x: fg.exp(x) * x if x > 0.5 else x * x))


def test_eight_threads_give_the_sequential_results():
    expected = [_work(k) for k in range(8)]
    results: dict[int, tuple[float, ...]] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for _ in range(30):
                results[k] = _work(k)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [results[k] for k in range(8)] == expected
    assert gc.isenabled()  # the collector pause of transforms is balanced


def test_a_transform_inside_a_custom_rule_and_inside_jit():
    @fg.custom_vjp
    def f(x):
        return x * x

    f.defvjp(lambda x: (f(x), (x,)), lambda res, g: (g * fg.grad(lambda y: y * y)(res[0]),))
    assert fg.grad(f)(3.0) == 6.0
    assert fg.grad(fg.grad(f))(3.0) == 2.0
    inner = fg.jit(lambda x: fg.grad(lambda y: y**3)(x))
    assert inner(2.0) == 12.0 and inner(3.0) == 27.0


# Memory ---------------------------------------------------------------------------


def _growth(call, n: int) -> int:
    for _ in range(200):
        call()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        call()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before


def test_ten_thousand_grad_calls_leave_memory_flat():
    g = fg.grad(lambda p: fg.tanh(p["w"] * p["x"]) + p["w"] ** 2)
    params = {"w": 0.3, "x": -1.2}
    assert _growth(lambda: g(params), 10_000) < 64_000


def test_ten_thousand_jit_calls_leave_memory_flat_and_the_cache_bounded():
    step = fg.jit(fg.value_and_grad(lambda x: x * 2 if x > 0 else -x * x), cache_size=4)
    xs = iter(range(10**9))
    assert _growth(lambda: step(float(next(xs) % 7 - 3)), 10_000) < 64_000
    assert step.cache_info().entries <= 4
