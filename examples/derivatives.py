"""A function and its derivatives: nested grad, Taylor mode, and the graph.

    python examples/derivatives.py [--x 0.7] [--order 6]    (order 0 to 12)

Prints f(x) = tanh(sin(x)) * exp(x) and its first derivatives three ways:
nested fg.grad (a new graph per order), fg.derivatives (Taylor mode, one
graph), and a central difference of the previous order as a sanity check.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import fgrad as fg


def f(x: Any) -> Any:
    return fg.tanh(fg.sin(x)) * fg.exp(x)


def nested(order: int) -> list[Any]:
    """f, f', ..., f^(order) as functions, by nesting fg.grad."""
    functions = [f]
    for _ in range(order):
        functions.append(fg.grad(functions[-1]))
    return functions


# Nested grad builds a graph about 2.5 times larger per order: order 12 takes seconds, 16 minutes.
MAX_ORDER = 12


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Print the table; returns the derivatives by nested grad and by Taylor mode."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--x", type=float, default=0.7, help="the point, a finite number (default 0.7)")
    p.add_argument(
        "--order", type=int, default=6, help=f"the highest derivative, 0 to {MAX_ORDER} (default 6)"
    )
    args = p.parse_args(argv)
    # Checked before any work, with argparse's usage message and exit status 2.
    if not math.isfinite(args.x):
        p.error(f"argument --x: must be a finite number, got {args.x}")
    if not 0 <= args.order <= MAX_ORDER:
        p.error(f"argument --order: must be from 0 to {MAX_ORDER}, got {args.order}")

    functions = nested(args.order)
    start = time.perf_counter()
    by_grad = [g(args.x) for g in functions]
    t_grad = time.perf_counter() - start
    start = time.perf_counter()
    by_taylor = fg.derivatives(f, order=args.order)(args.x)
    t_taylor = time.perf_counter() - start

    h = 1e-5
    print(f"f(x) = tanh(sin(x)) * exp(x) at x = {args.x}\n")
    print(f"{'k':>3}  {'nested grad':>22}  {'Taylor mode':>22}  {'central difference':>22}")
    for k in range(args.order + 1):
        below = functions[k - 1] if k else None
        check = f"{(below(args.x + h) - below(args.x - h)) / (2 * h):22.10f}" if below else ""
        print(f"{k:>3}  {by_grad[k]:22.10f}  {by_taylor[k]:22.10f}  {check:>22}")
    print(f"\nnested grad: {t_grad * 1000:.1f} ms; Taylor mode: {t_taylor * 1000:.1f} ms")
    print("graph of f:", fg.formula(fg.trace(f)(args.x)))
    return {"nested": by_grad, "taylor": by_taylor}


if __name__ == "__main__":
    main()
