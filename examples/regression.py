"""Fit a curve with adam: y = a * sin(b * x) + c from noisy samples.

    python examples/regression.py [--steps 300] [--lr 0.05]

Parameters are a PMap; each step computes fg.value_and_grad of the mean
squared error and returns new parameters from the optimiser: nothing is
mutated. The step is jitted, so after the first call it runs compiled code.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from typing import Any

from pyrsistent import pmap

import fgrad as fg
from fgrad import optim

TRUE = {"a": 1.5, "b": 2.0, "c": -0.3}


def data(n: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    rng = random.Random(seed)
    xs = tuple(rng.uniform(-2.0, 2.0) for _ in range(n))
    ys = tuple(TRUE["a"] * math.sin(TRUE["b"] * x) + TRUE["c"] + rng.gauss(0.0, 0.05) for x in xs)
    return xs, ys


def model(p: Any, x: float) -> Any:
    return p["a"] * fg.sin(p["b"] * x) + p["c"]


def mse(p: Any, xs: Sequence[float], ys: Sequence[float]) -> Any:
    return fg.mean([(model(p, x) - y) ** 2 for x, y in zip(xs, ys)])


def main(argv: Sequence[str] | None = None) -> Any:
    """Fit the curve; returns the parameters and their mean squared error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="adam steps, >= 1 (default 300)")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate, > 0 (default 0.05)")
    parser.add_argument("--n", type=int, default=50, help="number of samples, >= 1 (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    args = parser.parse_args(argv)
    # Checked before any work, with argparse's usage message and exit status 2.
    if args.steps < 1:
        parser.error(f"argument --steps: must be at least 1, got {args.steps}")
    if args.n < 1:
        parser.error(f"argument --n: must be at least 1, got {args.n}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"argument --lr: must be a finite number > 0, got {args.lr}")

    xs, ys = data(args.n, args.seed)
    params = pmap({"a": 1.0, "b": 1.5, "c": 0.0})
    opt = optim.adam(args.lr)
    state = opt.init(params)
    step = fg.jit(fg.value_and_grad(mse), static_argnums=(1, 2))
    for k in range(args.steps):
        value, grads = step(params, xs, ys)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        if k % max(1, args.steps // 5) == 0 or k == args.steps - 1:
            shown = ", ".join(f"{name}={params[name]:+.4f}" for name in sorted(params))
            print(f"step {k:4d}  mse {value:.6f} (before the step)  {shown}")
    final = mse(params, xs, ys)  # of the parameters returned, not of those before the last update
    print(f"final mse {final:.6f}")
    print("true values:", ", ".join(f"{k}={v:+.4f}" for k, v in sorted(TRUE.items())))
    return params, final


if __name__ == "__main__":
    main()
