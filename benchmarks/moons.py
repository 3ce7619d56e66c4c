"""The seed workload in fgrad and micrograd: time per training step, same run.

Trains the moons MLP (2-16-16-1, 100 examples, max-margin loss, SGD with
learning rate 1 - 0.9 k / 100) in:

    micrograd            micrograd 0.1.0 as shipped
    micrograd-gc-paused  the same with the collector paused during each step
                         and run after it (the fair baseline)
    fgrad-binary         fgrad, the loss written with plain binary ops
    fgrad-fused          fgrad with fg.dot neurons and n-ary sums
    fgrad-jit-*          fg.jit(fg.value_and_grad(loss)) in each style (the
                         data static; trace and compile timed separately)
    fgrad-jit-step-fused the whole step (gradient, sgd update) under one jit
    fgrad-vmap-jit-*     the loss written for ONE example and mapped with
                         fg.vmap, under jit: with numpy, each node of the
                         compiled graph runs once over the whole batch
    numpy                a hand-written numpy forward/backward of the same
                         MLP and SGD step (the array-speed reference)

All systems start from micrograd's initial weights on the same data; their
loss trajectories must agree to 1e-9 before any time is reported. Systems
alternate within each repeat (A B C D, A B C D, ...); the table shows
medians over repeats of the time per step, and ratios against micrograd as
shipped and against the fair baseline.

    pip install '.[bench]' && python benchmarks/moons.py --steps 5 --repeats 5

(``--steps 100`` times whole training runs; the fast rows need it to rise
above the clock's and the loop's noise.)

Writes benchmarks/results/moons.md and moons.json (or --out DIR).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import fgrad as fg
from fgrad import optim
from fgrad.datasets import moons
from fgrad.demo import learning_rate, loss, nodes_per_step, vmap_loss
from fgrad.nn import MLP

SCHEDULE_STEPS = 100  # the seed's schedule is 1 - 0.9 k / 100 whatever --steps is


def micrograd_available() -> bool:
    try:
        import micrograd  # noqa: F401
    except ImportError:
        return False
    return True


# micrograd -------------------------------------------------------------------


def micrograd_model(seed: int) -> Any:
    from micrograd.nn import MLP as MgMLP

    random.seed(seed)  # micrograd draws its weights from the global generator
    return MgMLP(2, [16, 16, 1])


def micrograd_step(model: Any, xs: Sequence[Any], ys: Sequence[float], k: int) -> float:
    """One step of micrograd's own demo: forward, backward, SGD update."""
    from micrograd.engine import Value

    inputs = [list(map(Value, x)) for x in xs]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(ys, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    total = data_loss + reg_loss
    model.zero_grad()
    total.backward()
    lr = learning_rate(SCHEDULE_STEPS)(k)
    for p in model.parameters():
        p.data -= lr * p.grad
    return float(total.data)


def micrograd_nodes(model: Any, xs: Sequence[Any], ys: Sequence[float]) -> int:
    from micrograd.engine import Value

    scores = [model(list(map(Value, x))) for x in xs]
    losses = [(1 + -yi * s).relu() for yi, s in zip(ys, scores)]
    total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())
    seen: set[int] = set()
    stack = [total]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
    return len(seen)


# fgrad -----------------------------------------------------------------------


def _data_loss(model: MLP, xs: Any, ys: Any) -> Any:
    return loss(model, xs, ys)[0]


Trainer = Callable[..., tuple[MLP, list[float]]]


def fgrad_trainer(style: str, jit: bool = False, vmap: bool = False) -> Trainer:
    """value_and_grad of the loss, eager or under fg.jit (the data static);
    the optimiser runs eagerly on the returned pytrees."""
    opt = optim.sgd(learning_rate(SCHEDULE_STEPS))
    grad_step = fg.value_and_grad(vmap_loss if vmap else _data_loss)
    if jit:
        grad_step = fg.jit(grad_step, static_argnums=(1, 2))

    def train_step(model: MLP, state: Any, xs: Any, ys: Any) -> tuple[MLP, Any, Any]:
        value, grads = grad_step(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return optim.apply_updates(model, updates), state, value

    return _training(style, opt, train_step, grad_step)


def _training(style: str, opt: Any, train_step: Callable[..., Any], jitted: Any) -> Trainer:
    """The training loop every fgrad row shares; ``run.step`` is the part
    that is jitted (or the eager step), for its cache_info."""

    def run(model: MLP, xs: Sequence[Any], ys: Sequence[float], steps: int) -> tuple[MLP, list[float]]:
        model = model.with_style(style)
        xs, ys = as_static(xs, ys)
        state = opt.init(model)
        losses = []
        for _ in range(steps):
            model, state, value = train_step(model, state, xs, ys)
            losses.append(value)
        return model, losses

    run.step = jitted  # type: ignore[attr-defined]
    return run


def as_static(xs: Any, ys: Any) -> tuple[Any, Any]:
    """The data as tuples (static arguments are hashed); kept as they are if
    they already are, so the same objects reach jit on every call."""
    if type(xs) is tuple and all(type(x) is tuple for x in xs) and type(ys) is tuple:
        return xs, ys
    return tuple(map(tuple, xs)), tuple(ys)


def fgrad_jit_trainer(style: str, vmap: bool = False) -> Callable[..., tuple[MLP, list[float]]]:
    """fg.jit(fg.value_and_grad(loss)) with the data static."""
    return fgrad_trainer(style, jit=True, vmap=vmap)


def fgrad_jit_step_trainer(style: str, vmap: bool = False) -> Callable[..., tuple[MLP, list[float]]]:
    """The whole training step (value_and_grad, sgd update, apply) under one jit."""
    opt = optim.sgd(learning_rate(SCHEDULE_STEPS))
    data_loss = vmap_loss if vmap else _data_loss

    def train_step(model: MLP, state: Any, xs: Any, ys: Any) -> tuple[MLP, Any, Any]:
        value, grads = fg.value_and_grad(data_loss)(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return optim.apply_updates(model, updates), state, value

    step = fg.jit(train_step, static_argnums=(2, 3))
    return _training(style, opt, step, step)


# numpy, by hand ----------------------------------------------------------------


def numpy_run(model: MLP, xs: Sequence[Any], ys: Sequence[float], steps: int) -> tuple[float, list[float]]:
    """The same training, written by hand with numpy arrays; (seconds, losses).
    Converting the model to arrays happens before the clock starts."""
    import numpy as np

    layers = [
        (np.array([list(n.w) for n in layer.neurons]), np.array([n.b for n in layer.neurons]))
        for layer in model.layers
    ]
    x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
    schedule = learning_rate(SCHEDULE_STEPS)
    losses = []
    start = time.perf_counter()
    for k in range(steps):
        acts, pre = [x], []
        for i, (w, b) in enumerate(layers):
            z = acts[-1] @ w.T + b
            pre.append(z)
            acts.append(np.maximum(z, 0.0) if i < len(layers) - 1 else z)
        margin = 1.0 - y * acts[-1][:, 0]
        penalty = sum(float((w * w).sum() + (b * b).sum()) for w, b in layers)
        losses.append(float(np.maximum(margin, 0.0).mean()) + 1e-4 * penalty)
        g = (-((margin > 0) * y) / len(y))[:, None]  # d loss / d score
        lr = schedule(k)
        new = []
        for i in range(len(layers) - 1, -1, -1):
            w, b = layers[i]
            gw, gb = g.T @ acts[i] + 2e-4 * w, g.sum(axis=0) + 2e-4 * b
            if i:
                g = (g @ w) * (pre[i - 1] > 0)
            new.append((w - lr * gw, b - lr * gb))
        layers = new[::-1]
    return time.perf_counter() - start, losses


def fgrad_model_from(mg_model: Any, style: str) -> MLP:
    """An fgrad MLP holding micrograd's initial weights (same flatten order)."""
    template = MLP.init([2, 16, 16, 1], seed=0, style=style)
    return fg.tree_unflatten(fg.tree_structure(template), [float(p.data) for p in mg_model.parameters()])


# The benchmark -----------------------------------------------------------------


def run_system(
    name: str, seed: int, xs: Sequence[Any], ys: Sequence[float], steps: int
) -> tuple[float, list[float]]:
    """Train ``steps`` steps from the initial weights; (seconds, losses)."""
    gc.collect()  # the previous system's garbage (micrograd's graphs hold cycles) is not this one's
    mg = micrograd_model(seed)
    if name.startswith("micrograd"):
        paused = name == "micrograd-gc-paused"
        losses = []
        start = time.perf_counter()
        for k in range(steps):
            if paused:
                gc.disable()
            losses.append(micrograd_step(mg, xs, ys, k))
            if paused:
                gc.enable()
                gc.collect()
        return time.perf_counter() - start, losses
    if name == "numpy":
        return numpy_run(fgrad_model_from(mg, "fused"), xs, ys, steps)
    style = name.rsplit("-", 1)[1]
    model = fgrad_model_from(mg, style)
    vmap = "-vmap-" in name
    if "-jit-step-" in name:
        run = fgrad_jit_step_trainer(style, vmap)
    elif "-jit-" in name:
        run = fgrad_jit_trainer(style, vmap)
    else:
        run = fgrad_trainer(style)
    if "-jit-" in name:
        # Compile once before the clock starts (reported separately); the
        # data is converted to tuples before it too, as numpy's to arrays.
        xs, ys = as_static(xs, ys)
        run(model, xs, ys, 1)
        start = time.perf_counter()
        _, losses = run(model, xs, ys, steps)
        return time.perf_counter() - start, losses
    start = time.perf_counter()
    _, losses = run(model, xs, ys, steps)
    return time.perf_counter() - start, losses


# Rows timed over --fast-steps: a few steps of them is a fraction of a millisecond.
FAST = (
    "fgrad-jit-binary",
    "fgrad-jit-fused",
    "fgrad-jit-step-fused",
    "fgrad-vmap-jit-fused",
    "fgrad-vmap-jit-step-fused",
    "numpy",
)
SYSTEMS = (
    "micrograd",
    "micrograd-gc-paused",
    "fgrad-binary",
    "fgrad-fused",
    "fgrad-jit-binary",
    "fgrad-jit-fused",
    "fgrad-jit-step-fused",
    "fgrad-vmap-jit-fused",
    "fgrad-vmap-jit-step-fused",
    "numpy",
)


def compile_seconds(
    style: str, seed: int, xs: Sequence[Any], ys: Sequence[float], vmap: bool = False
) -> float:
    """Time of the first jitted call: trace plus compile."""
    run = fgrad_jit_trainer(style, vmap)
    model = fgrad_model_from(micrograd_model(seed), style)
    start = time.perf_counter()
    run(model, xs, ys, 1)
    return time.perf_counter() - start


def check_agreement(
    seed: int, xs: Sequence[Any], ys: Sequence[float], steps: int, tol: float = 1e-9
) -> dict[str, float]:
    """Largest |loss - micrograd's loss| per system over ``steps`` steps."""
    reference = run_system("micrograd", seed, xs, ys, steps)[1]
    worst = {}
    for name in SYSTEMS[1:]:
        losses = run_system(name, seed, xs, ys, steps)[1]
        err = max(abs(a - b) for a, b in zip(losses, reference))
        if not err <= tol:
            raise SystemExit(f"{name}: loss trajectory differs from micrograd's by {err:.3g} > {tol}")
        worst[name] = err
    return worst


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="training steps per timed run (default 5)")
    p.add_argument(
        "--fast-steps",
        type=int,
        default=100,
        help="steps per timed run of the compiled and numpy rows (default 100)",
    )
    p.add_argument("--repeats", type=int, default=5, help="alternating repeats (default 5)")
    p.add_argument("--check-steps", type=int, default=3, help="steps compared for agreement (default 3)")
    p.add_argument("--n", type=int, default=100, help="examples (default 100)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    if not micrograd_available():
        raise SystemExit("this benchmark needs micrograd: pip install '.[bench]'")

    xs, ys = moons(args.n, noise=0.1, seed=args.seed)
    agreement = check_agreement(args.seed, xs, ys, args.check_steps)

    times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for r in range(args.repeats):
        for name in SYSTEMS:
            steps = args.fast_steps if name in FAST else args.steps
            seconds, _ = run_system(name, args.seed, xs, ys, steps)
            times[name].append(seconds / steps)
        print(
            f"repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{n} {1000 * times[n][-1]:.1f} ms" for n in SYSTEMS),
            file=sys.stderr,
        )

    mg0 = micrograd_model(args.seed)
    nodes = {"micrograd": micrograd_nodes(mg0, xs, ys)}
    nodes["micrograd-gc-paused"] = nodes["micrograd"]
    for style in ("binary", "fused"):
        nodes[f"fgrad-{style}"] = nodes_per_step(fgrad_model_from(mg0, style), xs, ys)
        nodes[f"fgrad-jit-{style}"] = nodes[f"fgrad-{style}"]
    for name in ("fgrad-jit-step-fused", "fgrad-vmap-jit-fused", "fgrad-vmap-jit-step-fused"):
        nodes[name] = nodes["fgrad-fused"]
    nodes["numpy"] = 0
    compile_s = {f"fgrad-jit-{s}": compile_seconds(s, args.seed, xs, ys) for s in ("binary", "fused")}
    compile_s["fgrad-vmap-jit-fused"] = compile_seconds("fused", args.seed, xs, ys, vmap=True)

    median = {n: statistics.median(t) for n, t in times.items()}
    rows = []
    for name in SYSTEMS:
        rows.append(
            {
                "system": name,
                "ms_per_step": 1000 * median[name],
                "x_vs_micrograd": median["micrograd"] / median[name],
                "x_vs_gc_paused": median["micrograd-gc-paused"] / median[name],
                "nodes_per_step": nodes[name],
                "max_loss_diff": agreement.get(name, 0.0),
                "trace_compile_s": compile_s.get(name),
                "runs_ms": [1000 * t for t in times[name]],
            }
        )
    result = {
        "benchmark": "moons",
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores)".strip(),
        "steps": args.steps,
        "fast_steps": args.fast_steps,
        "repeats": args.repeats,
        "examples": len(xs),
        "rows": rows,
    }
    table = to_markdown(result)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "moons.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "moons.md"), "w") as f:
        f.write(table + "\n")
    return result


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"moons MLP, {result['examples']} examples, median of {result['repeats']} alternating runs of "
        f"{result['steps']} steps ({result['fast_steps']} for the compiled and numpy rows), "
        f"Python {result['python']}, {result['machine']}",
        "",
        "| system | ms / step | x vs micrograd | x vs gc-paused | nodes / step | trace + compile |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        compile_s = f"{r['trace_compile_s']:.2f} s" if r.get("trace_compile_s") is not None else ""
        nodes = f"{r['nodes_per_step']:,}" if r["nodes_per_step"] else ""
        lines.append(
            f"| {r['system']} | {r['ms_per_step']:.2f} | {r['x_vs_micrograd']:.1f} | "
            f"{r['x_vs_gc_paused']:.1f} | {nodes} | {compile_s} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
