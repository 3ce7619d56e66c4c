"""vmap over sequences of examples, composed with the other transforms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import pvector

import fgrad as fg
from fgrad.datasets import moons
from fgrad.nn import MLP

FLOATS = st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=8)


def example_loss(model, x, y):
    return fg.relu(1.0 - y * model(x))


def test_the_readme_example_composes_with_grad_and_jit():
    # The loop backend: bit for bit (the numpy one is tested in test_vmap_numpy).
    xs, ys = moons(12, noise=0.1, seed=3)
    model = MLP.init([2, 4, 1], seed=3)

    def loss(model, xs, ys):
        return fg.mean(fg.vmap(example_loss, in_axes=(None, 0, 0), backend="loop")(model, xs, ys))

    def reference(model, xs, ys):
        return fg.mean([example_loss(model, x, y) for x, y in zip(xs, ys)])

    step = fg.jit(fg.value_and_grad(loss))
    value, grads = step(model, xs, ys)
    ref_value, ref_grads = fg.value_and_grad(reference)(model, xs, ys)
    assert value == ref_value
    assert fg.tree_leaves(grads) == fg.tree_leaves(ref_grads)


@given(FLOATS, st.floats(-2.0, 2.0))
def test_vmap_equals_a_python_loop(xs, w):
    f = lambda w, x: fg.tanh(w * x) + x * x  # noqa: E731
    assert fg.vmap(f, in_axes=(None, 0))(w, xs) == tuple(f(w, x) for x in xs)


def test_vmap_of_vmap_and_jvp_of_vmap():
    grid = [[1.0, 2.0], [3.0, 4.0]]
    inner = fg.vmap(lambda x: x * x)
    assert fg.vmap(inner)(grid) == ((1.0, 4.0), (9.0, 16.0))
    out, dout = fg.jvp(lambda w: fg.vmap(lambda x: w * x, in_axes=0)([1.0, 2.0]), (3.0,), (1.0,))
    assert out == (3.0, 6.0) and dout == (1.0, 2.0)


def test_mapped_arguments_may_be_pvectors_of_pytrees():
    examples = pvector([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}])
    assert fg.vmap(lambda e: e["a"] * e["b"])(examples) == (2.0, 12.0)


def test_errors_name_the_argument_and_the_fix():
    with pytest.raises(ValueError, match="same number of examples: argument 0 has 2, argument 1 has 3"):
        fg.vmap(lambda a, b: a * b)([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="argument 1 is mapped .* is a float"):
        fg.vmap(lambda a, b: a * b)([1.0], 2.0)
    with pytest.raises(ValueError, match="nothing to map over"):
        fg.vmap(lambda a: a, in_axes=None)(1.0)
    with pytest.raises(ValueError, match="in_axes has 1 entries"):
        fg.vmap(lambda a, b: a, in_axes=(0,))([1.0], [2.0])
    with pytest.raises(ValueError, match="use 0 .* or None"):
        fg.vmap(lambda a: a, in_axes=1)([1.0])
    with pytest.raises(ValueError, match="out_axes must be 0"):
        fg.vmap(lambda a: a, out_axes=1)
