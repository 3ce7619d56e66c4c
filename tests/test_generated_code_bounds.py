"""Generated code never nests with the data: the depth of every expression
that jit, the numpy backend and the compiled pytree walks write is bounded
whatever the number of terms (CPython's compiler recurses once per level, so
a sum written as one chain of 4,417 ``+`` raised RecursionError)."""

from __future__ import annotations

import ast

import pytest

import fgrad as fg
from fgrad.datasets import moons
from fgrad.demo import vmap_loss
from fgrad.nn import MLP

np = pytest.importorskip("numpy")

MAX_DEPTH = 200  # far below the few thousand levels CPython's compiler allows


def depth(node: ast.AST) -> int:
    """The nesting depth of an expression tree (iteratively: it may be deep)."""
    best = 0
    todo = [(node, 1)]
    while todo:
        n, d = todo.pop()
        best = max(best, d)
        todo.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return best


def deepest(source: str) -> int:
    return max(depth(stmt) for stmt in ast.walk(ast.parse(source)) if isinstance(stmt, ast.stmt))


@pytest.mark.parametrize("n", [100, 3000])
def test_an_l2_penalty_beside_a_batch_is_not_one_chain(n: int) -> None:
    def f(ws, xs):
        per = fg.vmap(lambda w, x: w[0] * x, in_axes=(None, 0))(ws, xs)
        return fg.mean(per) + 1e-4 * fg.dot(ws, ws)

    ws = [0.001 * i for i in range(n)]
    xs = [0.5, -1.0, 2.0]
    step = fg.jit(fg.value_and_grad(f))
    value, grads = step(ws, xs)
    eager_value, eager_grads = fg.value_and_grad(f)(ws, xs)
    assert value == pytest.approx(eager_value, rel=1e-12)
    assert list(grads) == pytest.approx(list(eager_grads), rel=1e-12)
    assert "over the batch" in step.source(ws, xs)
    assert deepest(step.source(ws, xs)) <= MAX_DEPTH


@pytest.mark.parametrize("n", [100, 3000])
def test_long_scalar_sums_and_dots_under_jit_are_bounded(n: int) -> None:
    def f(ps):
        return fg.sum([p * p for p in ps]) + fg.dot(ps, ps[::-1])

    ps = [0.001 * i - 1.0 for i in range(n)]
    step = fg.jit(fg.value_and_grad(f))
    assert step(ps) == fg.value_and_grad(f)(ps)  # bit for bit, as always under scalar jit
    assert deepest(step.source(ps)) <= MAX_DEPTH


def test_the_demo_model_64_wide_trains_under_vmap_and_jit() -> None:
    xs, ys = moons(20, seed=0)
    model = MLP.init([2, 64, 64, 1], seed=1)
    step = fg.jit(fg.value_and_grad(vmap_loss))
    value, grads = step(model, xs, ys)
    eager_value, eager_grads = fg.value_and_grad(vmap_loss)(model, xs, ys)
    assert value == pytest.approx(eager_value, rel=1e-12)
    flat, flat_eager = fg.tree_leaves(grads), fg.tree_leaves(eager_grads)
    assert len(flat) == 4417
    assert all(a == pytest.approx(b, rel=1e-9, abs=1e-15) for a, b in zip(flat, flat_eager))
    assert deepest(step.source(model, xs, ys)) <= MAX_DEPTH
