"""vmap's numpy backend: one traced graph over the whole batch, under jit.

Every result is compared with the loop backend (or an eager Python loop) to
1e-12 relative: the batched code sums in numpy's order, not left to right.
Sums that cancel (a bias gradient of +-1/n terms) are compared to 1e-15
absolute, a few ulps of their O(1) terms, since their relative error is
unbounded in any order.
"""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.datasets import moons
from fgrad.demo import loss as demo_loss
from fgrad.demo import train, vmap_loss
from fgrad.nn import MLP
from fgrad.primitives import ops
from fgrad.testing import expressions
from fgrad.transforms import batching

np = pytest.importorskip("numpy")
vmap_module = sys.modules["fgrad.transforms.vmap"]


def close(a, b, rel=1e-12, atol=1e-15):
    la, lb = fg.tree_leaves(a), fg.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if math.isnan(x) or math.isnan(y):
            assert math.isnan(x) and math.isnan(y)
        else:
            assert abs(x - y) <= rel * max(abs(x), abs(y)) + atol or x == y, (x, y)


def example_loss(model, x, y):
    return fg.relu(1.0 - y * model(x))


def loss(backend):
    def f(model, xs, ys):
        return fg.mean(fg.vmap(example_loss, in_axes=(None, 0, 0), backend=backend)(model, xs, ys))

    return f


def is_batched(jitted, *args):
    return "over the batch" in jitted.source(*args)


def test_the_layered_example_runs_over_the_batch_and_matches_the_loop():
    xs, ys = moons(40, noise=0.1, seed=3)
    model = MLP.init([2, 8, 8, 1], seed=3)
    step = fg.jit(fg.value_and_grad(loss("auto")))
    got = step(model, xs, ys)
    assert is_batched(step, model, xs, ys)
    want = fg.value_and_grad(loss("loop"))(model, xs, ys)
    close(got, want)
    close(step(model, xs, ys), want)  # the compiled path, not only the trace
    assert type(got[1]) is MLP and all(type(g) is float for g in fg.tree_leaves(got[1]))


def test_dots_of_a_layer_become_matrix_products():
    xs, ys = moons(20, noise=0.1, seed=0)
    model = MLP.init([2, 16, 16, 1], seed=0)
    step = fg.jit(fg.value_and_grad(loss("auto")))
    src = step.source(model, xs, ys)
    # forward: one product per layer; reverse: one per hidden layer's inputs,
    # and one per layer's weight gradients.
    assert src.count(" @ ") <= 8
    close(step(model, xs, ys), fg.value_and_grad(loss("loop"))(model, xs, ys))


def test_without_numpy_the_loop_gives_the_same_results(monkeypatch):
    xs, ys = moons(10, noise=0.1, seed=1)
    model = MLP.init([2, 4, 1], seed=1)
    with_numpy = fg.jit(fg.value_and_grad(loss("auto")))(model, xs, ys)
    monkeypatch.setattr(vmap_module, "have_numpy", lambda: False)
    step = fg.jit(fg.value_and_grad(loss("auto")))
    without = step(model, xs, ys)
    assert not is_batched(step, model, xs, ys)
    close(with_numpy, without)
    assert without == fg.value_and_grad(loss("loop"))(model, xs, ys)  # the loop is exact


def test_a_missing_numpy_names_the_extra(monkeypatch):
    monkeypatch.setattr(batching, "_np", None)
    monkeypatch.setitem(sys.modules, "numpy", None)
    assert not batching.have_numpy()
    with pytest.raises(ImportError, match=r"pip install 'fgrad\[numpy\]'"):
        batching.numpy_module("vmap")


def test_a_python_branch_on_a_batched_value_falls_back_to_the_loop():
    def f(w, x):
        return w * x if x > 0 else w - x

    g = fg.jit(fg.value_and_grad(lambda w, xs: fg.sum(fg.vmap(f, in_axes=(None, 0))(w, xs))))
    xs = [1.0, -2.0, 3.0]
    assert g(2.0, xs) == fg.value_and_grad(lambda w, xs: fg.sum([f(w, x) for x in xs]))(2.0, xs)
    assert not is_batched(g, 2.0, xs)


def test_per_example_gradients_are_not_summed():
    # grad opened inside the vmap: the gradient of the shared w is per example.
    xs = [1.0, 2.0, 3.0, 4.0]
    per_example = fg.jit(fg.vmap(fg.grad(lambda w, x: w * w * x), in_axes=(None, 0)))
    assert per_example(3.0, xs) == (6.0, 12.0, 18.0, 24.0)
    assert is_batched(per_example, 3.0, xs)
    # and summed when grad is outside
    mapped = fg.vmap(lambda w, x: w * w * x, in_axes=(None, 0))
    total = fg.jit(fg.grad(lambda w, xs: fg.sum(mapped(w, xs))))
    assert total(3.0, xs) == 60.0


def test_vmap_of_vmap_jvp_and_higher_order_under_jit():
    grid = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    inner = fg.vmap(lambda x: fg.tanh(x) * x)
    got = fg.jit(fg.vmap(inner))(grid)
    close(got, fg.vmap(fg.vmap(lambda x: fg.tanh(x) * x, backend="loop"), backend="loop")(grid))

    def f(w):
        return fg.sum(fg.vmap(lambda w, x: fg.sin(w * x), in_axes=(None, 0))(w, [0.5, 1.0, 2.0]))

    close(fg.jit(lambda w: fg.jvp(f, (w,), (1.0,)))(0.3), fg.jvp(f, (0.3,), (1.0,)))
    close(fg.jit(fg.grad(fg.grad(f)))(0.3), fg.grad(fg.grad(f))(0.3))
    close(fg.jit(fg.hessian(f))(0.3), fg.hessian(f)(0.3))


def test_pytree_examples_and_outputs():
    examples = [{"a": float(i), "b": [float(i) + 1, 2.0]} for i in range(5)]

    def f(w, e):
        return {"s": w * e["a"] + e["b"][0], "t": (fg.exp(e["b"][1] * w), w)}

    got = fg.jit(fg.vmap(f, in_axes=(None, 0)))(0.5, examples)
    close(got, tuple(f(0.5, e) for e in examples))
    assert isinstance(got[0]["s"], float)


def test_a_user_primitive_needs_a_vectorized_implementation_to_be_batched():
    plain = fg.Primitive(
        "softplus", impl=lambda x: math.log1p(math.exp(x)), vjp=lambda g, out, x: (g * fg.sigmoid(x),)
    )
    fast = fg.Primitive(
        "softplus",
        impl=lambda x: math.log1p(math.exp(x)),
        vjp=lambda g, out, x: (g * fg.sigmoid(x),),
        vectorized=lambda x: np.log1p(np.exp(x)),
    )
    xs = [0.5, -1.0, 2.0]
    for prim, batched in ((plain, False), (fast, True)):
        mapped = fg.vmap(lambda w, x, p=prim: p(w * x), in_axes=(None, 0))
        g = fg.jit(fg.grad(lambda w, xs, mapped=mapped: fg.sum(mapped(w, xs))))
        close(g(1.5, xs), fg.grad(lambda w, p=prim: fg.sum([p(w * x) for x in xs]))(1.5))
        assert is_batched(g, 1.5, xs) is batched


XS = st.lists(st.floats(-2.0, 2.0), min_size=2, max_size=6)


@given(expressions(n_inputs=2, max_steps=6), st.floats(-2.0, 2.0), XS)
def test_random_programs_batched_equal_the_loop(f, w, xs):
    def total(backend):
        return lambda w, xs: fg.mean(fg.vmap(f, in_axes=(None, 0), backend=backend)(w, xs))

    got = fg.jit(fg.value_and_grad(total("auto")))(w, xs)
    want = fg.value_and_grad(total("loop"))(w, xs)
    close(got, want)


def test_the_demo_trains_the_same_with_vmap():
    xs, ys = moons(30, noise=0.1, seed=0)
    model = MLP.init([2, 16, 16, 1], seed=0)
    a = train(model, xs, ys, steps=5)
    b = train(model, xs, ys, steps=5, vmap=True)
    close(a.losses, b.losses)
    close(a.model, b.model)
    want = fg.value_and_grad(lambda m: demo_loss(m, xs, ys)[0])(model)
    close(fg.value_and_grad(vmap_loss)(model, xs, ys), want)


def test_backend_must_be_known():
    with pytest.raises(ValueError, match="backend must be one of"):
        fg.vmap(lambda x: x, backend="gpu")


# Adam divides by sqrt(v) + eps: a gradient that cancels to 0 in one summation
# order and to ~1e-17 in another moves its parameter by up to lr * 1e-17 / eps
# (~1e-10 here), so adam's parameters are compared to 1e-9 absolute.
@pytest.mark.parametrize(
    "opt, atol",
    [(fg.optim.sgd(0.3), 1e-15), (fg.optim.momentum(0.1), 1e-15), (fg.optim.adam(0.05), 1e-9)],
    ids=["sgd", "momentum", "adam"],
)
def test_a_whole_training_step_under_jit_matches_the_eager_step(opt, atol):
    # The scalar tail (penalty, gradients, optimiser) runs as vector statements.
    xs, ys = moons(24, noise=0.1, seed=2)
    model = MLP.init([2, 8, 8, 1], seed=2)

    def step(model, state, xs, ys):
        value, grads = fg.value_and_grad(vmap_loss)(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return fg.optim.apply_updates(model, updates), state, value

    jitted = fg.jit(step, static_argnums=(2, 3))
    data = (tuple(map(tuple, xs)), tuple(ys))
    a = b = model
    sa = sb = opt.init(model)
    for _ in range(3):
        a, sa, va = step(a, sa, *data)
        b, sb, vb = jitted(b, sb, *data)
        close(va, vb, atol=atol)
        close(a, b, atol=atol)
        close(sa, sb, atol=atol)
    assert type(b) is MLP and all(type(x) is float for x in fg.tree_leaves(b))
    assert is_batched(jitted, b, sb, *data)


def test_guards_on_shared_values_still_switch_paths():
    def loss(w, xs):
        scale = w * 2.0 if w > 0 else -w  # a guard outside the vmap, on a shared value
        return fg.sum(fg.vmap(lambda w, x: fg.tanh(w * x) * scale, in_axes=(None, 0))(w, xs))

    xs = (0.5, -1.0, 2.0, 0.25)
    g = fg.jit(fg.value_and_grad(loss))
    for w in (0.7, -0.4, 1.3, -2.0):
        close(g(w, xs), fg.value_and_grad(loss)(w, xs))
    assert g.cache_info().traces == 2


def test_numpy_data_and_functions_that_fail_on_a_batch():
    xs = np.array([0.5, 1.5, -2.0])

    def f(w, x):
        return fg.exp(w * x) + math.exp(x)  # math on constant data: fine per example

    g = fg.jit(fg.grad(lambda w: fg.sum(fg.vmap(f, in_axes=(None, 0))(w, xs))))
    close(g(0.3), fg.grad(lambda w: fg.sum([f(w, float(x)) for x in xs]))(0.3))
    h = fg.jit(fg.grad(lambda w: fg.sum(fg.vmap(lambda w, x: fg.tanh(w * x), in_axes=(None, 0))(w, xs))))
    want = sum((1 - math.tanh(2.0 * x) ** 2) * x for x in xs.tolist())
    assert h(2.0) == pytest.approx(want, rel=1e-12)
    assert is_batched(h, 2.0)
    rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # 2-D: examples are rows, the loop maps them
    k = fg.jit(lambda w: fg.vmap(lambda w, r: w * r[0] + r[1], in_axes=(None, 0))(w, rows))
    assert k(2.0) == (4.0, 10.0, 16.0)


def test_a_genuine_error_in_the_function_is_raised():
    def f(w, x):
        raise KeyError("broken")

    with pytest.raises(KeyError, match="broken"):
        fg.jit(lambda w: fg.vmap(f, in_axes=(None, 0))(w, [1.0, 2.0]))(1.0)


# Regressions found by review -------------------------------------------------


def test_weight_gradients_whose_inputs_wait_are_still_computed():
    # A vdot whose operands were deferred statements was grouped after its
    # group had been emitted: the compiled code read an unassigned register.
    def loss(backend):
        ex = lambda ws, x: fg.tanh(fg.dot(ws, x))  # noqa: E731
        return lambda ws, xs: fg.sum(fg.vmap(ex, in_axes=(None, 0), backend=backend)(ws, xs))

    ws, xs = [0.3, -0.2, 0.5], [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]
    j = fg.jit(fg.grad(loss("auto")))
    want = fg.grad(loss("loop"))(ws, xs)
    close(j(ws, xs), want)
    close(j(ws, xs), want)  # compiled


def test_an_inner_vmap_closing_over_the_outer_batch_loops():
    ys = [1.0, 2.0, 3.0]
    f = lambda w, x: fg.sum(fg.vmap(lambda y: w * x * y)(ys))  # noqa: E731
    g = fg.jit(lambda w, xs: fg.vmap(f, in_axes=(None, 0))(w, xs))
    assert g(1.0, [10.0, 20.0, 30.0]) == (60.0, 120.0, 180.0)
    assert g(1.0, [10.0, 20.0, 30.0]) == (60.0, 120.0, 180.0)


def test_nothing_runs_ahead_of_a_guard():
    mylog = fg.Primitive("mylog", impl=math.log, vjp=lambda g, out, x: (g / x,))

    def f(w, x, xs):
        s = fg.sum(fg.vmap(lambda w, z: w * z, in_axes=(None, 0))(w, xs))
        return s + mylog(x) if x > w * 2.0 else s - x  # mylog is only valid on its branch

    j = fg.jit(f)
    xs = [1.0, 2.0, 3.0]
    assert j(1.0, 3.0, xs) == pytest.approx(6.0 + math.log(3.0))
    assert j(0.0, -1.0, xs) == 1.0  # the guard fails before mylog(-1) runs


def test_equal_constants_of_another_type_or_sign_stay_apart():
    f = lambda w, x: fg.tanh(w * x) * 2 + fg.tanh(w * x) * 2.0  # noqa: E731
    j = fg.jit(lambda w, xs: fg.vmap(f, in_axes=(None, 0))(w, xs))
    xs = [0.1, 0.2, 0.3, 0.4]
    for _ in range(2):
        close(j(1.0, xs), fg.vmap(f, in_axes=(None, 0), backend="loop")(1.0, xs))
    g = lambda w, x: fg.div(1.0, w * x * 0.0) + fg.div(1.0, w * x * -0.0)  # noqa: E731
    k = fg.jit(
        lambda w, xs: fg.vmap(
            lambda w, x: (fg.div(1.0, w * 0.0), fg.div(1.0, w * -0.0), g(w, x)), in_axes=(None, 0)
        )(w, xs)
    )
    for _ in range(2):
        assert k(3.0, [1.0, 2.0])[0][:2] == (math.inf, -math.inf)


def test_numpy_written_impls_and_numpy_data_are_not_trusted_with_a_batch():
    lse = fg.Primitive(
        "lse2",
        impl=lambda a, b: float(np.log(np.sum(np.exp([a, b])))),
        vjp=lambda g, out, a, b: (g * fg.exp(a - out), g * fg.exp(b - out)),
    )
    f = lambda w, x: lse(w * x, x)  # noqa: E731
    xs = [0.5, 1.0, -2.0]
    close(fg.jit(lambda w: fg.vmap(f, in_axes=(None, 0))(w, xs))(1.5), tuple(f(1.5, x) for x in xs))
    data = np.array([1.0, 2.0, 6.0])
    h = fg.jit(lambda w: fg.vmap(lambda w, x: w * np.maximum(np.max(x), 0.0), in_axes=(None, 0))(w, data))
    assert h(1.0) == (1.0, 2.0, 6.0)
    small = np.array([100, 200], dtype=np.uint8)  # its own (wrapping) arithmetic, per example
    u = fg.jit(lambda w: fg.vmap(lambda w, x: w * float(x + x), in_axes=(None, 0))(w, small))
    with np.errstate(over="ignore"):
        assert u(1.0) == (200.0, 144.0)


LAYERS = st.lists(
    st.tuples(st.integers(1, 3), st.sampled_from(["tanh", "relu", "square", "sin"]), st.booleans()),
    min_size=1,
    max_size=3,
)


@given(
    LAYERS,
    st.integers(2, 5),
    st.integers(1, 3),
    st.sampled_from(["vg", "step", "per_example", "jvp"]),
    st.randoms(use_true_random=False),
)
def test_random_layered_programs_batched_equal_the_loop(layers, n, n_in, mode, rnd):
    acts = {"tanh": fg.tanh, "relu": fg.relu, "square": lambda z: z * z, "sin": fg.sin}
    sizes = [n_in] + [w for w, _, _ in layers]
    params = [
        [[rnd.uniform(-1, 1) for _ in range(a)] + [rnd.uniform(-0.5, 0.5)] for _ in range(b)]
        for a, b in zip(sizes, sizes[1:])
    ]
    xs = [[rnd.uniform(-2, 2) for _ in range(n_in)] for _ in range(n)]

    def example(p, x):
        h = list(x)
        for (_, act, bias), layer in zip(layers, p):
            h = [acts[act](fg.dot(row[:-1], h, bias=row[-1] if bias else None)) for row in layer]
        return fg.sum(h) * 0.5 + h[0] * h[-1]

    def build(backend):
        loss = lambda p, xs: fg.mean(fg.vmap(example, in_axes=(None, 0), backend=backend)(p, xs))  # noqa: E731
        if mode == "vg":
            return fg.value_and_grad(loss)
        if mode == "step":

            def step(p, xs):
                v, g = fg.value_and_grad(loss)(p, xs)
                return v, fg.tree_map(lambda a, b: a - 0.1 * b - 0.01 * a * a, p, g)

            return step
        if mode == "per_example":
            return lambda p, xs: fg.vmap(fg.grad(example), in_axes=(None, 0), backend=backend)(p, xs)
        tangents = (fg.tree_map(lambda a: 0.5, params), fg.tree_map(lambda a: 0.0, xs))
        return lambda p, xs: fg.jvp(fg.grad(loss), (p, xs), tangents)

    want = build("loop")(params, xs)
    j = fg.jit(build("auto"))
    close(j(params, xs), want, atol=1e-14)
    close(j(params, xs), want, atol=1e-14)  # compiled


def test_data_a_double_cannot_hold_exactly_is_mapped_by_the_loop():
    big = [10**20 + 1, 10**20 + 7]
    f = fg.jit(lambda w: fg.vmap(lambda w, x: w * (x - 10**20), in_axes=(None, 0))(w, big))
    assert f(1.0) == (1.0, 7.0)
    small = [np.float32(0.1), np.float32(0.7)]
    g = fg.jit(lambda w: fg.vmap(lambda w, x: w * x, in_axes=(None, 0))(w, small))
    assert g(1.0) == tuple(1.0 * x for x in small)


@pytest.mark.parametrize("constant", [np.float32(0.1), np.float16(0.3), np.longdouble(0.1)])
def test_a_closed_over_constant_of_another_precision_keeps_its_arithmetic(constant):
    xs = [1.0, 2.0, 3.0]

    def example(w, x):
        return w * x * constant + x

    def total(w, backend):
        return fg.sum(fg.vmap(example, in_axes=(None, 0), backend=backend)(w, xs))

    step = fg.jit(fg.value_and_grad(total), static_argnums=1)
    want = fg.value_and_grad(total)(0.7, "loop")
    assert step(0.7, "auto") == want == step(0.7, "loop")  # bit for bit: the loop ran
    assert not is_batched(step, 0.7, "auto")


def test_constants_numpy_combines_as_floats_still_batch():
    from fractions import Fraction

    def example(w, x):
        return w * x * np.float64(0.1) + np.int64(3) * x - np.int8(2)

    f = fg.jit(lambda w: fg.sum(fg.vmap(example, in_axes=(None, 0))(w, [1.0, 2.0, 3.0])))
    assert is_batched(f, 0.7)
    close(f(0.7), fg.sum(fg.vmap(example, in_axes=(None, 0))(0.7, [1.0, 2.0, 3.0])))
    third = fg.vmap(lambda w, x: w * x * Fraction(1, 3), in_axes=(None, 0))
    g = fg.jit(lambda w: fg.sum(third(w, [1.0, 2.0])))
    assert g(0.6) == 0.6 * 1.0 * Fraction(1, 3) + 0.6 * 2.0 * Fraction(1, 3) and not is_batched(g, 0.6)


def test_examples_whose_static_values_or_keys_differ_only_in_type_or_sign_are_not_merged():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class E:
        x: float
        s: float = fg.static_field()

    def f(e):
        return e.x * math.copysign(1.0, e.s)

    examples = [E(1.0, 0.0), E(2.0, -0.0)]
    want = fg.vmap(f, backend="loop")(examples)
    assert want == (1.0, -2.0)
    assert fg.jit(lambda es: fg.vmap(f)(es))(examples) == want

    def g(d):
        ((k, v),) = d.items()
        return v * {int: 1.0, bool: 10.0, float: 100.0}[type(k)]

    keyed = [{1: 1.0}, {True: 2.0}, {1.0: 3.0}]
    assert fg.jit(lambda ds: fg.vmap(g)(ds))(keyed) == fg.vmap(g, backend="loop")(keyed) == (1.0, 20.0, 300.0)


def test_examples_nested_500_deep_batch_without_recursion():
    def deep(x, n=500):
        for _ in range(n):
            x = [x]
        return x

    f = fg.jit(lambda a, b: fg.vmap(lambda t: fg.tree_leaves(t)[0] * 2.0)([a, b]))
    assert f(deep(1.0), deep(2.0)) == (2.0, 4.0)


def test_a_function_iterating_a_dict_sees_its_order_under_every_transform():
    p = {"b": 1.0, "a": 2.0}

    def first(p):
        return next(iter(p.values())) * 3.0 + p["a"]

    assert first(p) == fg.jit(first)(p) == 5.0
    assert fg.grad(first)(p) == fg.jit(fg.grad(first))(p) == {"b": 3.0, "a": 1.0}
    xs = [{"b": 1.0, "a": 2.0}, {"b": 3.0, "a": 4.0}]
    assert fg.jit(lambda xs: fg.vmap(first)(xs))(xs) == fg.vmap(first)(xs) == (5.0, 13.0)
    order = fg.jit(lambda p: p)(p)
    assert list(order) == ["b", "a"]


SPECIAL_VALUES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    2.0,
    -2.5,
    3.0,
    1e308,
    -1e308,
    5e-324,
    math.inf,
    -math.inf,
    math.nan,
    0.3,
    700.0,
    -700.0,
]


def _special(v):
    return v == 0 or v != v or math.isinf(v) or abs(v) >= 1e300 or abs(v) < 1e-300


def _arguments(name, prim):
    import inspect
    import itertools

    if name == "pow_const":
        return [(x, c) for x in SPECIAL_VALUES for c in (0.5, -0.5, 2, 2.0, -1, 3, 1.5, 0, -2, 1, 0.25)]
    if name == "round":
        return [(x, k) for x in SPECIAL_VALUES for k in (0, 1, 2)]
    if name == "pow_log":
        return [
            (c, x, y, k)
            for c in (1.0, 0.0, -2.0)
            for x in SPECIAL_VALUES
            for y in SPECIAL_VALUES[:9]
            for k in (0, 1, 2)
        ]
    n = len(inspect.signature(prim.impl).parameters)
    return list(itertools.product(SPECIAL_VALUES, repeat=n)) if n in (1, 2) else []


@pytest.mark.parametrize("name", sorted(ops.PRIMITIVES))
def test_each_primitives_numpy_version_is_its_scalar_impl_at_special_values(name):
    import struct

    batching.numpy_module()
    prim = ops.PRIMITIVES[name]
    if prim.vectorized is None:
        assert name in ("sum", "dot", "add", "sub", "mul", "neg", "stop_gradient")  # operators work on arrays
        return
    batch_positions = {"pow_const": (0,), "round": (0,), "pow_log": (1, 2)}.get(name)
    with np.errstate(all="ignore"):
        for args in _arguments(name, prim):
            want = prim.impl(*args)
            batched = [
                np.array([a, a]) if batch_positions is None or i in batch_positions else a
                for i, a in enumerate(args)
            ]
            got = float(np.asarray(prim.vectorized(*batched)).reshape(-1)[0])
            if any(_special(a) for a in args if isinstance(a, float)) or _special(want):
                assert (want != want and got != got) or struct.pack("<d", want) == struct.pack("<d", got), (
                    name,
                    args,
                    want,
                    got,
                )
            else:
                assert got == pytest.approx(want, rel=1e-15), (name, args)


def test_signed_zeros_and_infinities_give_the_loops_results_on_a_batch():
    cases = [
        (lambda x: fg.div(1.0, x**0.5), [-0.0, 4.0]),
        (lambda x: x**0.5, [-math.inf, 4.0]),
        (lambda x: fg.div(1.0, fg.maximum(x, 0.0)), [-0.0, 4.0]),
        (lambda x: fg.div(1.0, fg.minimum(x, -0.0)), [0.0, 4.0]),
    ]
    for f, xs in cases:
        loop = fg.vmap(f, backend="loop")(xs)
        batched = fg.jit(fg.vmap(f))
        assert "over the batch" in batched.source(xs)
        assert [repr(v) for v in batched(xs)] == [repr(v) for v in loop], (xs, loop)


def test_primitives_with_int_parameters_are_grouped_only_with_equal_parameters():
    def rounded(x):
        return fg.round(x, 2) + fg.round(x) + fg.round(x, 1)

    def powers(y):
        return fg.grad(lambda z: 2.0**z)(y) + fg.grad(fg.grad(lambda z: 2.0**z))(y)

    for f in (rounded, powers):
        step = fg.jit(fg.vmap(f))
        xs = [0.1234, 1.5, 2.75]
        assert "over the batch" in step.source(xs)
        close(step(xs), fg.vmap(f, backend="loop")(xs))


def test_a_zero_sum_regrouped_into_a_matrix_product_may_lose_its_sign():
    # What the README says: the special values of each primitive agree, but a
    # dot that numpy adds in its own order (here one layer's dots, a matrix
    # product) may give +0.0 where the scalar sum gives -0.0.
    def neuron(wb, x):
        return fg.dot([wb[0]], [x], wb[1])

    def run(backend):
        return fg.jit(lambda wb, xs: fg.vmap(neuron, in_axes=(None, 0), backend=backend)(wb, xs))

    looped = run("loop")((-0.0, -0.0), [1.0, 2.0])
    batched = run("auto")((-0.0, -0.0), [1.0, 2.0])
    assert [math.copysign(1.0, v) for v in looped] == [-1.0, -1.0]
    assert list(batched) == [0.0, 0.0]  # equal as numbers; the sign may differ
    assert is_batched(run("auto"), (-0.0, -0.0), [1.0, 2.0])


@pytest.mark.parametrize("n", [3, 64, 65, 200])
def test_a_dot_without_a_bias_starts_from_zero_as_its_impl_does(n):
    # every product -0.0: the impl's sum starts at 0.0 and gives 0.0, inline or called
    f = fg.jit(lambda xs: fg.vmap(lambda x: fg.dot([x + i for i in range(n)], [x * -0.0] * n))(xs))
    got = f([1.0, 2.0])
    assert [math.copysign(1.0, v) for v in got] == [1.0, 1.0]
    assert is_batched(f, [1.0, 2.0])


def test_per_example_outputs_of_a_batch_are_floats_while_tracing():
    seen = []
    flag = fg.Primitive(
        "flag",
        impl=lambda x: 1.0 if x > 0 else 0.0,
        jvp=lambda dxs, out, x: None,
        vectorized=lambda x: (x > 0).astype(int),
        symbolic_zeros=True,
    )

    def peel(x):
        while isinstance(x, fg.Expr):
            x = x.value  # (the value a node carries while tracing)
        return x

    def f(xs):
        outs = fg.vmap(flag)(xs)
        seen.extend(type(peel(o)) for o in outs)
        return fg.sum(list(outs))

    assert fg.jit(f)([1.0, -1.0, 2.0]) == 2.0
    assert seen == [float, float, float]


def test_array_arguments_beside_parameters_that_groups_read():
    # Regression: the vector of all the inputs was built from every leaf,
    # arrays included ("inhomogeneous shape"), when a group read three or
    # more parameters of a call that also took an array.
    def f(ws, xs):
        return fg.vmap(lambda x: ws[0] * x + ws[1] * x * x + ws[2] * x * x * x + ws[3] * ws[4])(xs)

    ws, xs = [1.0, 2.0, 3.0, 4.0, 5.0], np.array([1.0, 2.0, 3.0])
    assert list(fg.jit(f)(ws, xs)) == [float(v) for v in f(ws, xs)] == [26.0, 54.0, 122.0]
    step = fg.jit(fg.value_and_grad(lambda ws, xs: fg.sum(list(f(ws, xs)))))
    close(step(ws, xs), fg.value_and_grad(lambda ws, xs: fg.sum(list(f(ws, xs))))(ws, xs))


# How numpy code writes a long reduction of terms that live in vectors: the
# impl's arithmetic, numpy's sequential accumulate before Python 3.12 (where
# builtins.sum of floats became compensated), the impl's loop over lists after.
PLAIN = sys.version_info < (3, 12)


def reduced_sum(vector, listed):
    return f"float(ACCUMULATE({vector})[-1])" if PLAIN else f"PLAIN_SUM({listed})"


def reduced_dot(vectors, lists, start="0.0"):
    if PLAIN:
        return f"float(ACCUMULATE(CONCAT((({start},), {vectors[0]} * {vectors[1]})))[-1])"
    return f"PLAIN_DOT({lists[0]}, {lists[1]}, {start})"


def _penalised(n_params):
    def f(ps, xs):
        fit = fg.mean(fg.vmap(lambda x: (fg.dot(ps[:3], [x, x * x, 1.0]) - 1.0) ** 2)(xs))
        return fit + 1e-3 * fg.dot(ps, ps) + 1e-2 * fg.sum(ps) + 1e-4 * fg.dot(ps, ps[::-1], 0.5)

    return f, [0.1 * (i % 7) - 0.3 for i in range(n_params)], (0.5, -1.0, 2.0, 0.25)


@pytest.mark.parametrize("n_params", [8, 100, 5000])
def test_long_dots_and_sums_of_the_parameters_are_one_loop(n_params):
    f, ps, xs = _penalised(n_params)
    step = fg.jit(fg.value_and_grad(f), static_argnums=1)
    source = step.source(ps, xs)
    assert "over the batch" in source
    assert reduced_dot(("XS", "XS"), ("leaves", "leaves")) in source
    assert reduced_sum("XS", "leaves") in source
    assert max(map(len, source.splitlines())) < 400  # no line names every parameter
    close(step(ps, xs), fg.value_and_grad(f)(ps, xs))


def _with_a_batch(reductions):
    """``reductions(ps)`` beside a batched computation (so jit writes numpy code)."""

    def f(ps, xs):
        return (*reductions(ps), fg.sum(list(fg.vmap(lambda x: x * ps[0])(xs))))

    return f


BIG = 1e308
# Terms whose sum depends on the order of the additions: overflow, cancellation.
ORDER_SENSITIVE = [
    [BIG, -BIG] * 8,
    [BIG] * 8 + [-BIG] * 8,
    [BIG, 0.0, BIG, -BIG] + [0.0] * 4,
    [1e16, 1.0] + [0.0] * 6 + [-1e16] + [0.0] * 7,
    [0.1] * 20,
    [-0.0] * 9,
]


@pytest.mark.parametrize("ps", ORDER_SENSITIVE)
def test_long_reductions_of_the_parameters_give_the_eager_bits(ps):
    # Regression: numpy's pairwise sum and BLAS dot gave nan for 0.0, 0.0
    # for inf, 1.0 for 0.0 on these; the loops give the impl's bits.
    f = _with_a_batch(
        lambda ps: (
            fg.sum(ps),
            fg.dot(ps, [1.0] * len(ps)),
            fg.dot(ps, ps[::-1]),
            fg.dot(ps, [1.0] * len(ps), -BIG),
            fg.dot(ps[: len(ps) // 2], ps[len(ps) // 2 : len(ps) // 2 * 2], -math.inf),
        )
    )
    step = fg.jit(f, static_argnums=1)
    assert reduced_sum("XS", "leaves") in step.source(ps, (1.0, 2.0))
    assert [repr(v) for v in step(ps, (1.0, 2.0))] == [repr(v) for v in f(ps, (1.0, 2.0))]


def test_gradients_through_a_long_reduction_of_overflowing_parameters():
    def loss(ps, xs):
        return fg.mean(list(fg.vmap(lambda x: fg.tanh(x * ps[0]))(xs))) + 1e-3 * fg.sum(ps) ** 2

    ps, xs = [BIG, -BIG] * 8, (1.0, 2.0)
    assert list(fg.jit(fg.grad(loss), static_argnums=1)(ps, xs)) == list(fg.grad(loss)(ps, xs))


def test_a_guard_on_a_long_reduction_of_the_parameters_holds_as_traced():
    # Regression: numpy's dot gave 3.7706 where the impl gives
    # 3.7705999999999995, so the path just traced refused its own arguments
    # (an internal error), or a cached path of the other branch took them.
    def f(ps, xs):
        out = fg.vmap(lambda x: x * ps[0])(xs)
        return fg.sum(list(out)) * (1.0 if fg.dot(ps, ps) < 3.7706 else 0.5)

    ps = [0.82, 0.97, 0.62, 0.8, -0.38, 0.46, 0.8, 0.37]
    step = fg.jit(f, static_argnums=1)
    assert step([1.0] * 8, (1.0, 2.0)) == f([1.0] * 8, (1.0, 2.0)) == 1.5  # the other branch first
    assert step(ps, (1.0, 2.0)) == f(ps, (1.0, 2.0))
    assert fg.jit(f, static_argnums=1)(ps, (1.0, 2.0)) == f(ps, (1.0, 2.0))


def test_a_dot_over_values_of_several_vectors_concatenates_them():
    def f(ps, xs):
        g = fg.grad(lambda q: fg.mean(fg.vmap(lambda x: fg.dot(q, [x] * len(q)) ** 2)(xs)))(ps)
        both = [*ps, *g]
        return fg.dot(both, both)

    ps, xs = [0.1 * i for i in range(12)], (0.5, -1.0, 2.0)
    step = fg.jit(f, static_argnums=1)
    assert ("ACCUMULATE(CONCAT(((0.0,), CONCAT((XS, " if PLAIN else "PLAIN_DOT(CONCAT((XS, ") in step.source(
        ps, xs
    )
    close(step(ps, xs), f(ps, xs))


def test_reductions_of_the_parameters_keep_the_impls_signed_zeros():
    # a sum starts from its first term (all -0.0: -0.0), a dot from 0.0 (0.0)
    def f(ps, xs):
        batch = fg.vmap(lambda x: x * ps[0])(xs)
        neg, pos = ps[:10], ps[10:]
        return fg.sum(neg), fg.sum(pos), fg.dot(neg, pos), fg.dot(neg, neg[::-1]), fg.sum(list(batch))

    ps, xs = [-0.0] * 10 + [0.0] * 10, (1.0, 2.0)
    step = fg.jit(f, static_argnums=1)
    assert reduced_sum("XS[0:10]", "leaves[0:10]") in step.source(ps, xs)
    assert reduced_dot(("XS[0:10]", "XS[10:20]"), ("leaves[0:10]", "leaves[10:20]")) in step.source(ps, xs)
    assert (
        [repr(v) for v in step(ps, xs)]
        == [repr(v) for v in f(ps, xs)]
        == ["-0.0", "0.0", "0.0", "0.0", "-0.0"]
    )


def test_short_scalar_sums_in_numpy_code_give_the_eager_bits_on_every_python():
    # From Python 3.12, builtins.sum of floats is compensated (the impl gives
    # 1.0 here, 0.0 before): inline chains only where they are the impl's
    # arithmetic, as in scalar jit.
    f = _with_a_batch(
        lambda ps: (fg.sum(ps[:3]), fg.dot(ps[:3], [1.0, 1.0, 1.0]), fg.dot(ps[:3], ps[:3], 1.0))
    )
    ps = [1e16, 1.0, -1e16]
    step = fg.jit(f, static_argnums=1)
    assert [repr(v) for v in step(ps, (1.0, 2.0))] == [repr(v) for v in f(ps, (1.0, 2.0))]


def test_a_guard_on_a_value_numpy_sums_in_its_own_order_compiles_the_loop():
    # A layer's outputs (a matrix product) agree with the trace to rounding
    # only, so a comparison on them, or on anything computed from them (the
    # loss), could come out otherwise next to its threshold. jit compiles
    # such a program with vmap's loop, whose scalar code gives the trace's
    # bits. A batch's mean and a lone weight gradient are numpy's sum and
    # dot in the trace too: their guards keep the numpy code, and decide as
    # the trace did even at its own values (which agree with the loop's to
    # rounding).
    model = MLP.init([2, 4, 1], seed=0)
    xs, ys = moons(16, noise=0.1, seed=0)
    xs, ys = tuple(map(tuple, xs)), tuple(ys)

    def on_the_loss(model, xs, ys):
        value = vmap_loss(model, xs, ys)
        return value * 2.0 if value < 1.0 else value

    step = fg.jit(on_the_loss, static_argnums=(1, 2))
    assert "over the batch" not in step.source(model, xs, ys)
    assert repr(step(model, xs, ys)) == repr(on_the_loss(model, xs, ys))
    assert step.cache_info().traces == 2  # with numpy, then with the loop

    def mean(w, xs):
        return fg.mean(fg.vmap(lambda x: fg.tanh(w * x))(xs))

    def gradient(w, xs):
        return fg.grad(mean)(w, xs)

    for reduce in (mean, gradient):
        for w, data in ((0.3, (0.1, 0.5, 0.9)), (-2.0, (0.1, 0.5, 0.9)), (0.05, (1.0, 2.0))):
            at = fg.jit(reduce, static_argnums=1)(w, data)  # numpy's value
            assert at == pytest.approx(reduce(w, data), rel=1e-12)  # the loop's, to rounding

            def f(w, xs, reduce=reduce, at=at):
                m = reduce(w, xs)
                return m * 2.0 if m < at else -m  # the threshold at the traced value

            step = fg.jit(f, static_argnums=1)
            assert "over the batch" in step.source(w, data)
            assert step(w, data) == -at

    def on_the_mean(w, xs):
        m = mean(w, xs)
        return m * (2.0 if m > 0.1 else -1.0)

    grads = fg.jit(fg.grad(on_the_mean), static_argnums=1)
    close(grads(0.3, (0.1, 0.5, 0.9)), fg.grad(on_the_mean)(0.3, (0.1, 0.5, 0.9)))

    def branch_free(w, xs):  # what the README suggests instead: stays on numpy
        return fg.minimum(fg.mean(fg.vmap(lambda x: fg.tanh(w * x))(xs)), 0.1) * 2.0

    step = fg.jit(branch_free, static_argnums=1)
    assert "over the batch" in step.source(0.3, (0.1, 0.5, 0.9))
    close(step(0.3, (0.1, 0.5, 0.9)), branch_free(0.3, (0.1, 0.5, 0.9)))


def test_guards_on_parameters_and_exact_values_keep_the_numpy_code():
    def f(w, xs):
        scale = 2.0 if w > 0 else -1.0  # on a parameter
        out = fg.vmap(lambda x: fg.tanh(w * x) * scale)(xs)
        first = list(out)[0]  # one example's value: computed as the trace computed it
        return fg.sum(list(out)) if first < 0.5 else -first

    step = fg.jit(f, static_argnums=1)
    for w in (0.7, -0.4, 3.0):
        assert "over the batch" in step.source(w, (0.1, 0.5, 0.9))
        close(step(w, (0.1, 0.5, 0.9)), f(w, (0.1, 0.5, 0.9)))


def test_a_guard_at_the_threshold_of_a_layers_matrix_product():
    # Regression: the trace takes the batch's mean as the dots' impl adds,
    # numpy code as OpenBLAS's matrix product does; with the threshold at the
    # traced value, the path just traced refused its own arguments ("jit
    # internal error"). Data found by a search (the second of seed 1's draws).
    rng = random.Random(1)
    for _ in range(2):
        ws = [rng.gauss(0, 1) for _ in range(12)]
        xs = tuple(tuple(rng.gauss(0, 1) for _ in range(12)) for _ in range(5))

    def mean_of(ws, xs):
        return fg.mean(fg.vmap(lambda x: fg.dot(ws, x))(xs))

    threshold = mean_of(ws, xs)

    def f(ws, xs):
        m = mean_of(ws, xs)
        return m * 2.0 if m < threshold else m

    assert repr(fg.jit(f, static_argnums=1)(ws, xs)) == repr(f(ws, xs)) == repr(threshold)


@pytest.mark.parametrize("extra", [1, 3, 8, 9, 20])
def test_outputs_from_vectors_with_others_between_them(extra):
    # The vectors' outputs come back as one list with the few others inserted
    # in place (up to 8), or as a tuple of runs.
    def f(ps, xs):
        total = fg.sum(list(fg.vmap(lambda x: x * ps[0])(xs)))
        moved = [p * 0.5 - 1.0 for p in ps]
        singles = [total + k for k in range(extra)]
        return singles[:1], moved[:10], singles[1 : extra // 2 + 1], moved[10:], singles[extra // 2 + 1 :]

    ps, xs = [0.1 * i - 1.0 for i in range(30)], (1.0, 2.0, 3.0)
    step = fg.jit(f, static_argnums=1)
    assert "over the batch" in step.source(ps, xs)
    for _ in range(2):
        assert step(ps, xs) == f(ps, xs)


def test_a_guard_on_a_lone_scalar_function_keeps_the_numpy_code():
    # A floored learning-rate schedule: Python's max on a traced count is a
    # guard, on a pow the code computes by its impl, as the trace did.
    def f(k, ws, xs):
        lr = max(0.01 * 0.99**k, 1e-4)
        return lr * fg.sum(list(fg.vmap(lambda x: fg.dot(ws, x))(xs)))

    data = ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))
    step = fg.jit(f, static_argnums=2)
    for k in (0.0, 3.0, 458.0, 459.0, 500.0):
        assert "over the batch" in step.source(k, [0.1, 0.2], data)
        assert repr(step(k, [0.1, 0.2], data)) == repr(f(k, [0.1, 0.2], data))


def test_a_numpy_version_writing_into_a_shared_constant_fails_instead_of_drifting():
    # Constants of the compiled code (a vector of them here) serve every
    # call: a primitive's numpy version that writes into its argument gets
    # numpy's read-only error, where it used to change the next call's result.
    def writes(a, b):
        b = np.asarray(b)
        b += a
        return b

    addp = fg.Primitive("addp", impl=lambda a, b: a + b, vectorized=writes)

    def h(ps, xs):
        s = fg.sum(list(fg.vmap(lambda x: x * ps[0])(xs)))
        return s, [addp(p, c) for p, c in zip(ps, [1.0, 2.0, 3.0, 4.0])]

    step = fg.jit(h, static_argnums=1)
    with pytest.raises(ValueError, match="read-only"):
        step([0.1, 0.2, 0.3, 0.4], (1.0, 2.0))
