"""vmap(chunk_size=N): a gradient over batches larger than memory.

The step is ``fg.jit(fg.value_and_grad(loss))`` of the mean hinge loss of a
2-w-w-1 MLP (the demo's ``example_loss``, mapped with vmap over 1-D float64
arrays of the data), run unchunked and with ``chunk_size``. Each cell runs
in a fresh interpreter and reports: the first call (trace, compile and run),
ms per step (the median of ``--repeats`` runs of ``--steps`` steps), us per
example, and the peak memory a step allocates beyond the data (tracemalloc,
in a separate step). Rows of one batch size give the chunked/unchunked ratio
of time per example, measured in the same run; their losses must agree to
1e-12 relative.

    python benchmarks/chunked.py                       # the table below the README's
    python benchmarks/chunked.py --sizes 100000 --chunk 10000 --million
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def cell(w: int, n: int, chunk: int | None, steps: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    import fgrad as fg
    from fgrad.demo import example_loss
    from fgrad.nn import MLP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2))
    cols = (x[:, 0].copy(), x[:, 1].copy(), np.sign(x[:, 0] * x[:, 1]))
    model = MLP.init([2, w, w, 1], seed=1)

    def loss(m: Any, x0: Any, x1: Any, ys: Any) -> Any:
        per = fg.vmap(lambda m, a, b, y: example_loss(m, (a, b), y), (None, 0, 0, 0), chunk_size=chunk)
        return fg.mean(per(m, x0, x1, ys))

    step = fg.jit(fg.value_and_grad(loss))
    t0 = time.perf_counter()
    value, _ = step(model, *cols)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(model, *cols)
        times.append((time.perf_counter() - t0) / steps)
    tracemalloc.start()
    step(model, *cols)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ms = statistics.median(times) * 1e3
    return {"first_s": first, "ms": ms, "us_per_example": ms * 1e3 / n, "peak_mb": peak / 1e6, "value": value}


def run_cell(w: int, n: int, chunk: int | None, steps: int, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", str(w), str(n), str(chunk or 0)]
    cmd += ["--steps", str(steps), "--repeats", str(repeats)]
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"w": w, "n": n, "chunk": chunk, **result}


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| batch | chunk_size | first call s | ms / step | us / example | x unchunked | peak MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r.get("ratio")
        chunk = f"{r['chunk']:,}" if r["chunk"] else "none"
        lines.append(
            f"| {r['n']:,} | {chunk} | {r['first_s']:.2f} | {r['ms']:.1f} | "
            f"{r['us_per_example']:.3f} | {f'{ratio:.2f}' if ratio else ''} | {r['peak_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--million", action="store_true", help="add a chunked row at 10^6 examples")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--cell", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        w, n, chunk = args.cell
        print(json.dumps(cell(w, n, chunk or None, args.steps, args.repeats)))
        return {}
    rows = []
    for n in args.sizes:
        whole = run_cell(args.width, n, None, args.steps, args.repeats)
        rows.append(whole)
        if n > args.chunk:
            chunked = run_cell(args.width, n, args.chunk, args.steps, args.repeats)
            chunked["ratio"] = chunked["ms"] / whole["ms"]
            if abs(chunked["value"] - whole["value"]) > 1e-12 * abs(whole["value"]):
                raise AssertionError(f"chunked loss {chunked['value']!r} != unchunked {whole['value']!r}")
            rows.append(chunked)
    if args.million:
        rows.append(run_cell(args.width, 1_000_000, args.chunk, 1, 3))
    table = to_markdown(rows)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    result = {"rows": rows, "python": sys.version.split()[0], "width": args.width}
    with open(os.path.join(args.out, "chunked.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "chunked.md"), "w", encoding="utf-8") as f:
        f.write(table)
    return result


if __name__ == "__main__":
    main()
