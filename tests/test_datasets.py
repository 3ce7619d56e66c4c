"""Tests for fgrad.datasets: the two moons."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fgrad.datasets import moons


@given(st.integers(1, 60), st.floats(0.0, 1.0), st.integers(-(2**40), 2**40))
def test_shape_and_labels(n: int, noise: float, seed: int) -> None:
    xs, ys = moons(n, noise=noise, seed=seed)
    assert isinstance(xs, tuple) and isinstance(ys, tuple)
    assert len(xs) == len(ys) == n
    assert all(isinstance(p, tuple) and len(p) == 2 for p in xs)
    assert all(isinstance(c, float) for p in xs for c in p)
    assert ys.count(-1.0) == n // 2 and ys.count(1.0) == n - n // 2


def test_same_seed_gives_the_same_data() -> None:
    assert moons(50, noise=0.2, seed=7) == moons(50, noise=0.2, seed=7)


def test_different_seeds_give_different_data() -> None:
    assert moons(50, seed=1) != moons(50, seed=2)
    # Without noise only the order differs.
    (xs1, ys1), (xs2, ys2) = moons(50, noise=0.0, seed=1), moons(50, noise=0.0, seed=2)
    assert xs1 != xs2 and sorted(zip(xs1, ys1, strict=True)) == sorted(zip(xs2, ys2, strict=True))


def test_the_global_random_state_is_neither_read_nor_changed() -> None:
    random.seed(123)
    before = random.getstate()
    first = moons(20, seed=3)
    assert random.getstate() == before
    random.seed(999)
    assert moons(20, seed=3) == first


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101])
def test_without_noise_points_lie_on_the_two_half_circles(n: int) -> None:
    xs, ys = moons(n, noise=0.0, seed=0)
    for (x1, x2), y in zip(xs, ys, strict=True):
        if y == -1.0:  # outer moon: the upper half of the unit circle
            assert math.hypot(x1, x2) == pytest.approx(1.0, abs=1e-12)
            assert x2 >= 0.0
        else:  # inner moon: the lower half of the unit circle around (1, 0.5)
            assert math.hypot(x1 - 1.0, x2 - 0.5) == pytest.approx(1.0, abs=1e-12)
            assert x2 <= 0.5


def test_without_noise_the_points_are_sklearns_exactly() -> None:
    # linspace(0, pi, k) angles, as numpy computes them, end points included.
    n_out, n_in = 3, 4
    outer = [(math.cos(t), math.sin(t)) for t in (0.0, math.pi / 2, math.pi)]
    inner = [(1 - math.cos(t), 1 - math.sin(t) - 0.5) for t in (0.0, math.pi / 3, 2 * math.pi / 3, math.pi)]
    xs, ys = moons(n_out + n_in, noise=0.0)
    assert sorted(p for p, y in zip(xs, ys, strict=True) if y == -1.0) == sorted(outer)
    assert sorted(p for p, y in zip(xs, ys, strict=True) if y == 1.0) == sorted(inner)


def test_noise_has_roughly_the_requested_spread() -> None:
    clean, _ = moons(2000, noise=0.0, seed=5)
    noisy, _ = moons(2000, noise=0.3, seed=5)
    # Same seed: same shuffle, so the points pair up and differ by the noise.
    diffs = [a - b for p, q in zip(noisy, clean, strict=True) for a, b in zip(p, q, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs))
    assert abs(mean) < 0.02 and sd == pytest.approx(0.3, rel=0.05)


def test_the_data_are_shuffled() -> None:
    _, ys = moons(100, noise=0.0)
    assert ys != tuple(sorted(ys))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n must be at least 1"),
        ({"n": -5}, ValueError, "n must be at least 1"),
        ({"n": 10.0}, TypeError, "n must be an int"),
        ({"n": True}, TypeError, "n must be an int"),
        ({"noise": -0.1}, ValueError, "noise must be finite and >= 0"),
        ({"noise": float("inf")}, ValueError, "noise must be finite and >= 0"),
        ({"noise": float("nan")}, ValueError, "noise must be finite and >= 0"),
        ({"noise": "0.1"}, TypeError, "noise must be a float"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": None}, TypeError, "seed must be an int"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        moons(**kwargs)
