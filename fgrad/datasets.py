"""Small data sets in pure Python (no numpy): the two moons.

This module imports nothing of fgrad.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any

__all__ = ["moons"]


def _linspace_0_pi(n: int) -> list[float]:
    """``n`` evenly spaced angles from 0 to pi inclusive, as ``numpy.linspace``."""
    if n == 1:
        return [0.0]
    return [math.pi * i / (n - 1) for i in range(n)]


def _check_args(n: Any, noise: Any, seed: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"moons: n must be an int (the number of points), got {n!r} (a {type(n).__name__})")
    if n < 1:
        raise ValueError(f"moons: n must be at least 1, got {n}")
    if not isinstance(noise, numbers.Real) or isinstance(noise, bool):
        raise TypeError(
            f"moons: noise must be a float (the standard deviation of the gaussian noise), "
            f"got {noise!r} (a {type(noise).__name__})"
        )
    if not (float(noise) >= 0.0 and math.isfinite(noise)):
        raise ValueError(f"moons: noise must be finite and >= 0 (use 0.0 for no noise), got {noise!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"moons: seed must be an int, got {seed!r} (a {type(seed).__name__})")


def moons(
    n: int = 100, noise: float = 0.1, seed: int = 0
) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...]]:
    """Two interleaving half circles, as ``sklearn.datasets.make_moons``.

    ``n // 2`` points lie on the outer moon ``(cos t, sin t)`` with label
    -1.0 and the other ``n - n // 2`` on the inner moon
    ``(1 - cos t, 0.5 - sin t)`` with label +1.0, for ``t`` evenly spaced in
    ``[0, pi]``. The points are shuffled, then gaussian noise of standard
    deviation ``noise`` is added to each coordinate (sklearn's order). All
    randomness comes from ``random.Random(seed)``; the global random state is
    neither read nor changed, so a seed always gives the same data.

    Args:
        n: the number of points, at least 1.
        noise: the standard deviation of the noise, >= 0.
        seed: seeds the random generator.

    Returns:
        ``(xs, ys)``: a tuple of ``(x1, x2)`` float pairs and a tuple of
        labels, -1.0 or +1.0.

    >>> xs, ys = moons(6, noise=0.0)
    >>> len(xs), sorted(ys)
    (6, [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    >>> moons(6, seed=1) == moons(6, seed=1)
    True
    """
    _check_args(n, noise, seed)
    rng = random.Random(seed)
    n_out = n // 2
    n_in = n - n_out
    points = [(math.cos(t), math.sin(t)) for t in _linspace_0_pi(n_out)]
    points += [(1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5) for t in _linspace_0_pi(n_in)]
    labels = [-1.0] * n_out + [1.0] * n_in
    order = list(range(n))
    rng.shuffle(order)
    if noise > 0.0:
        sd = float(noise)
        xs = tuple((points[i][0] + rng.gauss(0.0, sd), points[i][1] + rng.gauss(0.0, sd)) for i in order)
    else:
        xs = tuple(points[i] for i in order)
    return xs, tuple(labels[i] for i in order)
