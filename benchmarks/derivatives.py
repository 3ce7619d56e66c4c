"""Higher derivatives: Taylor mode against nested grad.

The 10th derivative of f(x) = tanh(sin(x)) * exp(x) at x = 0.7 by
fg.derivatives (one trace, truncated Taylor series through every node) and by
10 nested fg.grad calls (each order differentiates the previous order's
graph). Both must agree (to 1e-8 relative, order by order) before any time
is reported; times are medians of --repeats runs.

    python benchmarks/derivatives.py --order 10 --repeats 5

Writes benchmarks/results/derivatives.md and derivatives.json (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import fgrad as fg


def f(x: Any) -> Any:
    return fg.tanh(fg.sin(x)) * fg.exp(x)


def by_nested_grad(order: int, x: float) -> list[float]:
    g: Callable[[Any], Any] = f
    out = [g(x)]
    for _ in range(order):
        g = fg.grad(g)
        out.append(g(x))
    return out


def by_taylor(order: int, x: float) -> list[float]:
    return fg.derivatives(f, order=order)(x)


def timed(fn: Callable[[], Any], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--order", type=int, default=10)
    p.add_argument("--x", type=float, default=0.7)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)

    taylor = by_taylor(args.order, args.x)
    nested = by_nested_grad(args.order, args.x)
    for k, (a, b) in enumerate(zip(taylor, nested)):
        if not abs(a - b) <= 1e-8 * max(1.0, abs(b)):
            raise SystemExit(f"order {k}: Taylor mode gives {a!r} but nested grad gives {b!r}")
    t_taylor = timed(lambda: by_taylor(args.order, args.x), args.repeats)
    t_nested = timed(lambda: by_nested_grad(args.order, args.x), args.repeats)
    result = {
        "benchmark": "derivatives",
        "python": sys.version.split()[0],
        "order": args.order,
        "x": args.x,
        "derivative": taylor[-1],
        "taylor_s": t_taylor,
        "nested_grad_s": t_nested,
        "speedup": t_nested / t_taylor,
    }
    table = "\n".join(
        [
            f"f(x) = tanh(sin(x)) * exp(x), derivative {args.order} at x = {args.x}: {taylor[-1]!r}",
            "",
            "| method | seconds | x vs nested grad |",
            "|---|---:|---:|",
            f"| fg.derivatives (Taylor mode) | {t_taylor:.6f} | {t_nested / t_taylor:.1f} |",
            f"| {args.order} nested fg.grad | {t_nested:.6f} | 1.0 |",
        ]
    )
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "derivatives.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    with open(os.path.join(args.out, "derivatives.md"), "w") as fh:
        fh.write(table + "\n")
    return result


if __name__ == "__main__":
    main()
