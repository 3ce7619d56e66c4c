"""Whole training steps of wide models under jit with vmap's numpy code,
against the same steps run eagerly (vmap's loop): correct at every size the
scaling benchmark measures. Widths 16 and 64 by default; 128 and 256 with
FGRAD_SLOW=1."""

from __future__ import annotations

import pytest
from conftest import SLOW

import fgrad as fg
from fgrad import optim
from fgrad.datasets import moons
from fgrad.demo import vmap_loss
from fgrad.nn import MLP

np = pytest.importorskip("numpy")

WIDTHS = [16, 64] + ([128, 256] if SLOW else [])


def close_trees(a, b, rel=1e-9, atol=1e-12):
    la, lb = fg.tree_leaves(a), fg.tree_leaves(b)
    assert len(la) == len(lb) and fg.tree_structure(a) == fg.tree_structure(b)
    bad = [(x, y) for x, y in zip(la, lb) if not abs(x - y) <= rel * max(abs(x), abs(y)) + atol]
    assert not bad, bad[:5]


def training(opt, w):
    """The eager training step with ``opt``, a 2-w-w-1 model, its optimiser
    state, and the data."""

    def step(model, state, xs, ys):
        value, grads = fg.value_and_grad(vmap_loss)(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return optim.apply_updates(model, updates), state, value

    xs, ys = moons(20, noise=0.1, seed=0)
    model = MLP.init([2, w, w, 1], seed=1)
    return step, model, opt.init(model), tuple(map(tuple, xs)), tuple(ys)


@pytest.mark.parametrize("w", WIDTHS)
def test_sgd_steps_of_a_wide_model_match_the_eager_steps(w):
    step, model, state, xs, ys = training(optim.sgd(0.05), w)
    jitted = fg.jit(step, static_argnums=(2, 3))
    m1, s1, m2, s2 = model, state, model, state
    for _ in range(2):
        m1, s1, v1 = jitted(m1, s1, xs, ys)
        m2, s2, v2 = step(m2, s2, xs, ys)
        assert v1 == pytest.approx(v2, rel=1e-12)
        close_trees(m1, m2)
    assert type(m1) is type(model) and "over the batch" in jitted.source(m1, s1, xs, ys)


@pytest.mark.parametrize("w", WIDTHS)
def test_an_adam_step_of_a_wide_model_matches_the_eager_step(w):
    # One step, and its moments: adam's update divides by the gradient's own
    # size, so a weight whose gradient cancels to about 1e-18 eagerly and to
    # 0.0 in numpy's sum over the batch moves by a step either way.
    step, model, state, xs, ys = training(optim.adam(0.01), w)
    m1, s1, v1 = fg.jit(step, static_argnums=(2, 3))(model, state, xs, ys)
    m2, s2, v2 = step(model, state, xs, ys)
    assert v1 == pytest.approx(v2, rel=1e-12)
    assert s1.count == s2.count == 1
    close_trees(s1.mu, s2.mu)
    close_trees(s1.nu, s2.nu, atol=1e-24)
    assert fg.tree_structure(m1) == fg.tree_structure(m2)
