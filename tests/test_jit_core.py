"""jit: compiled results equal eager ones bit for bit; guards, cache, safety."""

from __future__ import annotations

import struct
import sys

import pytest
from pyrsistent import PMap

import fgrad as fg
from fgrad.datasets import moons
from fgrad.demo import loss
from fgrad.nn import MLP
from tests.conftest import SLOW


def bits(values):
    return [struct.pack("<d", float(v)) for v in fg.tree_leaves(values)]


def test_the_seed_workload_is_bit_for_bit_and_keeps_its_structures():
    xs, ys = moons(40, noise=0.1, seed=0)
    model = MLP.init([2, 16, 16, 1], seed=0)
    f = fg.value_and_grad(lambda m, xs, ys: loss(m, xs, ys)[0])
    step = fg.jit(f)
    for _ in range(3):
        (v1, g1), (v2, g2) = step(model, xs, ys), f(model, xs, ys)
        assert bits((v1, g1)) == bits((v2, g2))
        assert type(g1) is MLP and fg.tree_structure(g1) == fg.tree_structure(g2)
        model = fg.tree_map(lambda p, g: p - 0.5 * g, model, g1)
    assert step.cache_info() == fg.jit(f).cache_info()._replace(traces=1, hits=2, misses=1, entries=1)


def test_pmaps_stay_pmaps_and_transforms_compose_under_jit():
    f = lambda p: fg.tanh(p["w"] * p["x"]) ** 3  # noqa: E731
    params = {"w": 0.7, "x": -1.3}
    grads = fg.jit(fg.grad(f))(params)
    assert isinstance(grads, PMap) and grads == fg.grad(f)(params)
    assert fg.jit(fg.grad(fg.grad(lambda x: x**4)))(1.5) == 12.0 * 1.5**2
    assert fg.jit(lambda x: fg.jvp(fg.sin, (x,), (2.0,)))(0.5) == fg.jvp(fg.sin, (0.5,), (2.0,))
    assert fg.jit(fg.hessian(f))(params) == fg.hessian(f)(params)


def test_guards_take_both_sides_and_cache_both_paths():
    step = fg.jit(fg.value_and_grad(lambda x: x * 2 if x > 0 else -x * x))
    assert step(3.0) == (6.0, 2.0) and step(-3.0) == (-9.0, 6.0)
    assert step(1.0) == (2.0, 2.0) and step(-1.0) == (-1.0, 2.0)
    assert step.cache_info() == (2, 2, 2, 2)
    source = step.source(-1.0)
    assert "raise GUARD" in source


def test_the_cache_is_a_bounded_lru():
    step = fg.jit(lambda x: x + 1.0 if x > 1 else (x - 1.0 if x > 0 else x * 3.0), cache_size=2)
    for x in (2.0, 0.5, -1.0, 2.0, 0.5, -1.0):
        step(x)
    assert step.cache_info().entries == 2 and step.cache_info().traces == 6


def test_static_argnums_key_the_cache():
    step = fg.jit(lambda x, n: x**n, static_argnums=1)
    assert step(2.0, 3) == 8.0 and step(2.0, 4) == 16.0 and step(3.0, 3) == 27.0
    assert step.cache_info().traces == 2
    with pytest.raises(TypeError, match="must be hashable"):
        step(2.0, [3])


def test_float_of_a_traced_value_explains_itself():
    with pytest.raises(fg.TraceGuardError, match="static_argnums"):
        fg.jit(lambda x: float(x) * 2.0)(1.0)
    with pytest.raises(fg.TraceGuardError, match="int\\(\\) of a traced value"):
        fg.jit(lambda x: int(x))(1.0)
    with pytest.raises(TypeError, match=r"leaf at \[0\] is a str; .*static_argnums"):
        fg.jit(lambda s: s)("text")


def test_hostile_dict_keys_never_reach_the_source():
    keys = ['"); import os; os.system("echo hacked") #', "\n", "{}", "K[0]", "__import__"]
    params = {k: float(i + 1) for i, k in enumerate(keys)}
    f = lambda p: fg.sum([p[k] * p[k] for k in keys])  # noqa: E731
    step = fg.jit(fg.grad(f))
    assert step(params) == fg.grad(f)(params)
    source = step.source(params)
    # "K[0]" is also a name the code generator makes itself; the rest must be absent.
    assert all(k not in source for k in keys if k.strip() and k != "K[0]")
    assert "os.system" not in source and "hacked" not in source and "{" not in source


def test_source_is_readable_and_shared_subexpressions_computed_once():
    def f(x, y):
        shared = fg.exp(x * y)
        return shared * 1.0 + shared / 1.0 + (x - 0.0) * (1 * y)

    step = fg.jit(f)
    assert step(0.5, 2.0) == f(0.5, 2.0)
    source = step.source(0.5, 2.0)
    assert source.startswith("def compiled(leaves):")
    assert source.count("# exp") == 1  # computed once
    assert "* 1.0" in source  # kept: it quiets a signaling nan, as eager code does


def test_plus_zero_is_kept_because_of_negative_zero():
    step = fg.jit(lambda x: x + 0.0)
    assert bits(step(-0.0)) == bits((-0.0) + 0.0) == bits(0.0)
    assert bits(fg.jit(lambda x: x * 1.0)(-0.0)) == bits(-0.0)


@pytest.mark.parametrize("limit", [0, None])
def test_table_mode_equals_compiled_mode_including_guards(limit):
    g = lambda x, y: (fg.tanh(x * y + 2.0) * x if x > 0.5 else x * x) - 1.5 / y  # noqa: E731
    step = fg.jit(fg.value_and_grad(g, argnums=(0, 1)), max_compiled_ops=limit)
    for x in (1.0, 1.0, 0.2, 0.3, 2.0):
        assert bits(step(x, 2.0)) == bits(fg.value_and_grad(g, argnums=(0, 1))(x, 2.0))
    assert step.cache_info().traces == 2


def test_a_large_graph_works_under_jit():
    n = 1_000_000 if SLOW else 100_000

    def chain(x):
        for _ in range(n // 2):
            x = x * 0.999 + 0.001
        return x

    step = fg.jit(fg.value_and_grad(chain))
    assert bits(step(0.5)) == bits(fg.value_and_grad(chain)(0.5))
    assert bits(step(0.25)) == bits(fg.value_and_grad(chain)(0.25))


def test_jit_inside_another_transform_just_runs_the_function():
    inner = fg.jit(lambda x: x * x * x)
    assert fg.grad(inner)(2.0) == 12.0
    assert inner.cache_info().traces == 0
    assert "fgrad" in sys.modules
