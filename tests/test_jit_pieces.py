"""Large jit programs are compiled as pieces (a function per piece and one
that calls them in turn), so that CPython's compiler never holds a whole
huge program; results are the same bits as one function's."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings

import fgrad as fg
from fgrad.compilers import pysource
from fgrad.datasets import moons
from fgrad.demo import loss
from fgrad.nn import MLP
from fgrad.testing import expressions


def bits(tree: Any) -> list[bytes]:
    return [struct.pack("<d", float(x)) for x in fg.tree_leaves(tree)]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pysource, "PIECE_TERMS", 7)


def test_a_small_model_in_many_pieces_gives_the_bits_of_eager_code(small_pieces: None) -> None:
    xs, ys = moons(6, seed=2)
    model = MLP.init([2, 4, 4, 1], seed=3)
    f = fg.value_and_grad(lambda m: loss(m, xs, ys)[0])
    step = fg.jit(f)
    assert bits(step(model)) == bits(f(model))
    source = step.source(model)
    assert source.startswith("def compiled(leaves):") and source.count("\ndef piece") > 20


@settings(max_examples=60, deadline=None)
@given(expressions(n_inputs=3, max_steps=12))
def test_random_programs_in_pieces_match_one_function(program: Any) -> None:
    args = [0.7, -1.3, 2.1]
    f = fg.value_and_grad(lambda *xs: program(*xs), argnums=(0, 1, 2))
    whole = fg.jit(f)(*args)
    old = pysource.PIECE_TERMS
    pysource.PIECE_TERMS = 3
    try:
        pieces = fg.jit(f)(*args)
    finally:
        pysource.PIECE_TERMS = old
    assert bits(pieces) == bits(whole) == bits(f(*args))


def test_a_guard_in_a_later_piece_still_sends_other_inputs_down_their_own_path(small_pieces: None) -> None:
    def f(x: Any, y: Any) -> Any:
        z = x
        for _ in range(10):
            z = z * 1.5 + y
        if z > 0:  # guarded late in the program: in a piece of its own
            return z * z
        return -z

    step = fg.jit(f)
    for x in (1.0, -50.0, 2.0, -60.0):
        assert step(x, 0.5) == f(x, 0.5)
    assert step.cache_info().traces == 2
    assert step.source(1.0, 0.5).count("\ndef piece") >= 2
