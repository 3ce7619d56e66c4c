"""How fgrad's cost grows with the graph: time and peak memory per node.

Two graphs at each size n:
    chain  x -> x * 0.999 + 0.001, n/2 times (n nodes deep)
    wide   fg.sum over n/2 terms p_i * p_i (n nodes, one wide sum)

grad is timed (median of --repeats runs, collector as in normal use) and its
peak memory is measured separately with tracemalloc (which slows Python, so
never during timing).

    python benchmarks/scaling.py --sizes 1000 10000 100000 1000000

Writes benchmarks/results/scaling.md and scaling.json (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import fgrad as fg


def chain(n: int) -> tuple[Callable[[Any], Any], Any]:
    def f(x: Any) -> Any:
        for _ in range(n // 2):
            x = x * 0.999 + 0.001
        return x

    return f, 0.5


def wide(n: int) -> tuple[Callable[[Any], Any], Any]:
    def f(ps: Any) -> Any:
        return fg.sum([p * p for p in ps])

    return f, [0.001 * i for i in range(n // 2)]


GRAPHS = {"chain": chain, "wide": wide}


def nodes_of(kind: str, n: int) -> int:
    f, x = GRAPHS[kind](n)
    return fg.count_nodes(fg.trace(f)(x))


def time_grad(kind: str, n: int, repeats: int) -> float:
    f, x = GRAPHS[kind](n)
    g = fg.grad(f)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        g(x)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def peak_bytes(kind: str, n: int) -> int:
    f, x = GRAPHS[kind](n)
    g = fg.grad(f)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    g(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    rows = []
    for kind in GRAPHS:
        for n in args.sizes:
            nodes = nodes_of(kind, n)
            # Small graphs are timed over more runs: they are quick and noisy.
            seconds = time_grad(kind, n, max(args.repeats, min(200, 10**6 // n)))
            peak = peak_bytes(kind, n)
            rows.append(
                {
                    "graph": kind,
                    "n": n,
                    "nodes": nodes,
                    "ns_per_node": 1e9 * seconds / nodes,
                    "peak_bytes_per_node": peak / nodes,
                }
            )
            print(
                f"{kind} n={n}: {rows[-1]['ns_per_node']:.0f} ns/node, "
                f"{rows[-1]['peak_bytes_per_node']:.0f} B/node",
                file=sys.stderr,
            )
    for kind in GRAPHS:
        mine = [r for r in rows if r["graph"] == kind]
        ref = mine[0]["ns_per_node"]
        for r in mine:
            r["time_vs_smallest"] = r["ns_per_node"] / ref
    result = {"benchmark": "scaling", "python": sys.version.split()[0], "rows": rows}
    lines = [
        "| graph | n | nodes | ns / node | x vs smallest | peak bytes / node |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['graph']} | {r['n']:,} | {r['nodes']:,} | {r['ns_per_node']:.0f} | "
            f"{r['time_vs_smallest']:.2f} | {r['peak_bytes_per_node']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scaling.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "scaling.md"), "w") as f:
        f.write(table + "\n")
    return result


if __name__ == "__main__":
    main()
