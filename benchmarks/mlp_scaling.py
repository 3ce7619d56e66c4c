"""How fgrad scales with the model and the batch: the 2-w-w-1 MLP, w and n up.

For each cell (width w, batch n) it measures, each in a fresh process (so
that peak memory is the cell's own):

    vmap step   the whole training step (value_and_grad of the loss written
                for one example and mapped with fg.vmap, the sgd update, the
                new model) under one fg.jit, data static; with numpy, the
                compiled code runs each operation over the whole batch
    vmap step (adam)  the same with adam, whose state (two more trees of
                the model's shape and a count) goes in and out of each step
    numpy       the same step written by hand with numpy arrays
    scalar jit  fg.jit(fg.value_and_grad(loss)) of the loss written as a
                Python loop over the examples (only where --scalar asks)

and reports trace+compile time (the first call), peak resident memory of the
process, milliseconds per step (median of --repeats runs of --steps steps),
and the vmap step's ratio to numpy measured in the same process. Before any
time is reported, the two steps' losses over the run must agree to 1e-9.
The cells run with a single-threaded BLAS (OPENBLAS_NUM_THREADS and the like
set to 1 unless already set) for both rows alike: on this 2-core machine a
second busy process made OpenBLAS's threads spin, and one ``np.dot`` of
100,000 doubles took 4.4 ms instead of 0.06 ms.

    pip install '.[bench]' && python benchmarks/mlp_scaling.py --widths 16 32 64 128 --batches 100 1000

Writes benchmarks/results/mlp_scaling.md and mlp_scaling.json (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
LEARNING_RATE = 0.05
ADAM_RATE = 0.01
B1, B2, EPS = 0.9, 0.999, 1e-8


def _model_and_data(w: int, n: int) -> tuple[Any, Any, Any]:
    from fgrad.datasets import moons
    from fgrad.nn import MLP

    xs, ys = moons(n, noise=0.1, seed=0)
    return MLP.init([2, w, w, 1], seed=1), tuple(map(tuple, xs)), tuple(ys)


def _vmap_step(optimizer: str = "sgd") -> Any:
    import fgrad as fg
    from fgrad import optim
    from fgrad.demo import vmap_loss

    opt = optim.sgd(LEARNING_RATE) if optimizer == "sgd" else optim.adam(ADAM_RATE, B1, B2, EPS)

    def train_step(model: Any, state: Any, xs: Any, ys: Any) -> tuple[Any, Any, Any]:
        value, grads = fg.value_and_grad(vmap_loss)(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return optim.apply_updates(model, updates), state, value

    return fg.jit(train_step, static_argnums=(2, 3)), opt


def _numpy_step(model: Any, xs: Any, ys: Any, optimizer: str = "sgd") -> Any:
    """The vmap step by hand: a closure over arrays that runs one step."""
    import numpy as np

    layers = [
        (np.array([list(n.w) for n in layer.neurons]), np.array([n.b for n in layer.neurons]))
        for layer in model.layers
    ]
    x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
    # adam's moments, [(mu_w, mu_b), ...] and [(nu_w, nu_b), ...], and its count
    mu = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    nu = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    count = 0

    def adam(i: int, grads: tuple[Any, Any]) -> tuple[Any, ...]:
        c1, c2 = 1.0 - B1 ** (count + 1), 1.0 - B2 ** (count + 1)
        ms = tuple(B1 * m + (1.0 - B1) * g for m, g in zip(mu[i], grads))
        vs = tuple(B2 * v + (1.0 - B2) * (g * g) for v, g in zip(nu[i], grads))
        mu[i], nu[i] = ms, vs
        return tuple(
            p + -ADAM_RATE * (m / c1) / (np.sqrt(v / c2) + EPS) for p, m, v in zip(layers[i], ms, vs)
        )

    def step() -> float:
        nonlocal layers, count
        acts, pre = [x], []
        for i, (w, b) in enumerate(layers):
            z = acts[-1] @ w.T + b
            pre.append(z)
            acts.append(np.maximum(z, 0.0) if i < len(layers) - 1 else z)
        margin = 1.0 - y * acts[-1][:, 0]
        penalty = sum(float((w * w).sum() + (b * b).sum()) for w, b in layers)
        value = float(np.maximum(margin, 0.0).mean()) + 1e-4 * penalty
        g = (-((margin > 0) * y) / len(y))[:, None]
        new = []
        for i in range(len(layers) - 1, -1, -1):
            w, b = layers[i]
            gw, gb = g.T @ acts[i] + 2e-4 * w, g.sum(axis=0) + 2e-4 * b
            if i:
                g = (g @ w) * (pre[i - 1] > 0)
            new.append(
                (w - LEARNING_RATE * gw, b - LEARNING_RATE * gb) if optimizer == "sgd" else adam(i, (gw, gb))
            )
        layers = new[::-1]
        count += 1
        return value

    return step


def _median_ms(run: Any, steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            run()
        times.append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(times)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (kB on Linux)


def cell_vmap(w: int, n: int, steps: int, repeats: int, optimizer: str = "sgd") -> dict[str, Any]:
    """The vmap step and numpy in one process (their ratio is measured together)."""
    model, xs, ys = _model_and_data(w, n)
    step, opt = _vmap_step(optimizer)
    state = opt.init(model)
    start = time.perf_counter()
    new_model, new_state, first = step(model, state, xs, ys)
    compile_s = time.perf_counter() - start
    peak = _peak_mb()
    # agreement: the losses of a few steps, fgrad vs numpy from the same start
    by_hand = _numpy_step(model, xs, ys, optimizer)
    m, s = model, state
    for k in range(3):
        m, s, value = step(m, s, xs, ys)
        ref = by_hand()
        if abs(value - ref) > 1e-9 * max(1.0, abs(ref)):
            raise AssertionError(f"w={w} n={n} step {k}: fgrad {value!r} vs numpy {ref!r}")
    current = [new_model, new_state]

    def fgrad_run() -> None:
        current[0], current[1], _ = step(current[0], current[1], xs, ys)

    by_hand = _numpy_step(model, xs, ys, optimizer)
    fgrad_ms, numpy_ms = [], []
    for _ in range(repeats):  # alternating, so that load moves both alike
        fgrad_ms.append(_median_ms(fgrad_run, steps, 1))
        numpy_ms.append(_median_ms(by_hand, steps, 1))
    return {
        "compile_s": compile_s,
        "peak_mb": peak,
        "ms": statistics.median(fgrad_ms),
        "numpy_ms": statistics.median(numpy_ms),
    }


def cell_scalar(w: int, n: int, steps: int, repeats: int) -> dict[str, Any]:
    """fg.jit(fg.value_and_grad(loss)) of the loss as a Python loop over examples."""
    import fgrad as fg
    from fgrad.demo import loss

    model, xs, ys = _model_and_data(w, n)
    f = fg.jit(fg.value_and_grad(lambda m, xs, ys: loss(m, xs, ys)[0]), static_argnums=(1, 2))
    start = time.perf_counter()
    f(model, xs, ys)
    compile_s = time.perf_counter() - start
    peak = _peak_mb()
    ms = _median_ms(lambda: f(model, xs, ys), steps, repeats)
    return {"compile_s": compile_s, "peak_mb": peak, "ms": ms}


CELLS = {
    "vmap": cell_vmap,
    "adam": lambda w, n, steps, repeats: cell_vmap(w, n, steps, repeats, "adam"),
    "scalar": cell_scalar,
}


def run_cell(kind: str, w: int, n: int, steps: int, repeats: int, timeout: float) -> dict[str, Any]:
    """One cell in a fresh interpreter; its error, if it fails, in place of numbers."""
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", kind, str(w), str(n)]
    cmd += ["--steps", str(steps), "--repeats", str(repeats)]
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": last[:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| what | w | batch | trace+compile s | peak MB | ms / step | numpy ms / step | x numpy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['w']} | {r['n']} | {r['error']} | | | | |")
            continue
        numpy_ms = r.get("numpy_ms")
        ratio = f"{r['ms'] / numpy_ms:.2f}" if numpy_ms else ""
        lines.append(
            f"| {r['kind']} | {r['w']} | {r['n']} | {r['compile_s']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['ms']:.3f} | {f'{numpy_ms:.3f}' if numpy_ms else ''} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--scalar", type=int, nargs="*", default=[16, 32], help="widths for the scalar jit row (batch 100)"
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=["sgd", "adam"], default=["sgd", "adam"], help="for the vmap rows"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--cell", nargs=3, metavar=("KIND", "W", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        kind, w, n = args.cell[0], int(args.cell[1]), int(args.cell[2])
        print(json.dumps(CELLS[kind](w, n, args.steps, args.repeats)))
        return {}
    rows = []
    for optimizer in args.optimizers:
        for w in args.widths:
            for n in args.batches:
                rows.append(
                    {
                        "kind": "vmap step" if optimizer == "sgd" else "vmap step (adam)",
                        "w": w,
                        "n": n,
                        **run_cell(
                            "vmap" if optimizer == "sgd" else "adam",
                            w,
                            n,
                            args.steps,
                            args.repeats,
                            args.timeout,
                        ),
                    }
                )
                print(to_markdown(rows[-1:]).splitlines()[-1], flush=True)
    for w in args.scalar:
        rows.append(
            {
                "kind": "scalar jit",
                "w": w,
                "n": 100,
                **run_cell("scalar", w, 100, args.steps, args.repeats, args.timeout),
            }
        )
        print(to_markdown(rows[-1:]).splitlines()[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    result = {"rows": rows, "python": sys.version.split()[0], "steps": args.steps, "repeats": args.repeats}
    with open(os.path.join(args.out, "mlp_scaling.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(args.out, "mlp_scaling.md"), "w", encoding="utf-8") as fh:
        fh.write(to_markdown(rows))
    return result


if __name__ == "__main__":
    main()
