"""fgrad.nn: models are pytrees; gradients come back as models."""

from __future__ import annotations

import dataclasses
import math

import pytest
from pyrsistent import PVector, pvector

import fgrad as fg
from fgrad.nn import MLP, Layer, Neuron
from fgrad.testing import numerical_grad


def test_init_is_seeded_sized_and_micrograd_like():
    model = MLP.init([2, 16, 16, 1], seed=0)
    leaves = fg.tree_leaves(model)
    assert len(leaves) == 337
    assert model.sizes == (2, 16, 16, 1)
    assert all(-1.0 <= w <= 1.0 for layer in model.layers for n in layer.neurons for w in n.w)
    assert all(n.b == 0.0 for layer in model.layers for n in layer.neurons)
    assert [n.nonlin for layer in model.layers for n in layer.neurons[:1]] == [True, True, False]
    assert fg.tree_leaves(MLP.init([2, 16, 16, 1], seed=0)) == leaves
    assert fg.tree_leaves(MLP.init([2, 16, 16, 1], seed=1)) != leaves


def test_models_are_frozen_and_hold_persistent_vectors():
    model = MLP.init([2, 3, 1], seed=0)
    assert isinstance(model.layers, PVector) and isinstance(model.layers[0].neurons[0].w, PVector)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.layers = pvector()  # type: ignore[misc]


def test_single_output_is_a_scalar_and_several_are_a_tuple():
    assert isinstance(MLP.init([2, 3, 1], seed=0)([0.1, 0.2]), float)
    out = MLP.init([2, 3, 2], seed=0)([0.1, 0.2])
    assert isinstance(out, tuple) and len(out) == 2


@pytest.mark.parametrize("style", ["fused", "sum", "binary"])
def test_styles_give_the_same_values_and_gradients(style):
    base = MLP.init([2, 4, 4, 1], seed=3)
    model = base.with_style(style)
    x = [0.3, -0.7]
    assert model(x) == pytest.approx(base(x), abs=1e-12)
    g = fg.grad(lambda m: m(x))(model)
    g_ref = fg.grad(lambda m: m(x))(base)
    assert fg.tree_leaves(g) == pytest.approx(fg.tree_leaves(g_ref), abs=1e-12)


def test_grad_of_a_model_is_a_model_of_the_same_shape():
    model = MLP.init([2, 4, 1], seed=0)
    g = fg.grad(lambda m: m([0.5, -0.25]) ** 2)(model)
    assert type(g) is MLP and g.style == model.style
    assert type(g.layers[0]) is Layer and type(g.layers[0].neurons[0]) is Neuron
    assert fg.tree_structure(g) == fg.tree_structure(model)


def test_model_gradient_matches_central_differences():
    model = MLP.init([2, 3, 1], seed=5)
    x = [0.4, -0.9]

    def f(m):
        return fg.tanh(m(x))

    g = fg.tree_leaves(fg.grad(f)(model))
    n = fg.tree_leaves(numerical_grad(f, model))
    assert g == pytest.approx(n, abs=1e-6)


def test_fused_neuron_is_a_handful_of_nodes():
    neuron = Neuron(pvector([0.1] * 16), 0.0)
    out = fg.trace(lambda n: n([1.0] * 16))(neuron)
    assert fg.count_nodes(out) == 17 + 2  # 16 weights and a bias, a dot, a relu


def test_wrong_input_length_names_the_expected_size():
    model = MLP.init([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match="expected an input sequence of 2 numbers, got length 3"):
        model([1.0, 2.0, 3.0])


@pytest.mark.parametrize("sizes", [[2], [2, 0, 1], [2, -1], [2, 1.5], [2, True]])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match="positive ints"):
        MLP.init(sizes)


def test_bad_style_is_refused():
    with pytest.raises(ValueError, match="style must be one of"):
        MLP.init([2, 1], style="fast")


def test_applying_a_model_leaves_it_unchanged():
    model = MLP.init([2, 3, 1], seed=0)
    before = fg.tree_leaves(model)
    fg.grad(lambda m: m([1.0, 2.0]))(model)
    assert fg.tree_leaves(model) == before
    assert not any(math.isnan(v) for v in before)
