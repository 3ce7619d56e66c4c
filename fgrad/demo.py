"""The two-moons demo: train a 2-16-16-1 MLP with an SVM max-margin loss.

Run ``fgrad-demo``, ``python -m fgrad.demo`` or ``python examples/moons.py``
(``--help`` lists the options). It trains full-batch with SGD at learning rate
``1 - 0.9 k / steps`` for ``steps`` steps, shows progress, prints the final
loss, accuracy, nodes per step and time, and draws the decision boundary (a PNG
with matplotlib, else characters). Every option is checked before training.

``--vmap`` writes the loss for one example and maps it over the batch with
``fg.vmap`` under ``fg.jit``: with numpy installed (``fgrad[numpy]``) the
compiled step runs each operation once over the whole batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from fgrad import optim
from fgrad.compilers.jit import jit
from fgrad.datasets import moons
from fgrad.engine.tree import tree_leaves
from fgrad.nn import MLP, STYLES
from fgrad.primitives.piecewise import relu
from fgrad.primitives.reductions import dot, mean
from fgrad.primitives.reductions import sum as fsum
from fgrad.transforms.autodiff import trace, value_and_grad
from fgrad.transforms.batching import have_numpy
from fgrad.transforms.graph import count_nodes
from fgrad.transforms.vmap import vmap

Example = tuple[float, float]


def loss(model: MLP, xs: Sequence[Example], ys: Sequence[float]) -> tuple[Any, tuple[Any, ...]]:
    """``mean(relu(1 - y * score)) + 1e-4 * sum(p ** 2)``, and the scores.

    The scores come back as aux (``value_and_grad(loss, has_aux=True)``) so
    the accuracy is computed from plain floats afterwards: comparing traced
    values inside the loss would make jit guard on every prediction.

    The graph takes the model's style: ``fused`` uses ``fg.mean`` and one
    ``fg.dot`` for the penalty, ``binary`` writes it as micrograd does.
    """
    scores = [model(x) for x in xs]
    params = tree_leaves(model)
    if model.style == "binary":
        margins = [relu(1 + -y * s) for y, s in zip(ys, scores)]
        data_loss = sum(margins) * (1.0 / len(margins))
        penalty = 1e-4 * sum(p * p for p in params)
    elif model.style == "sum":
        data_loss = fsum([relu(1 - y * s) for y, s in zip(ys, scores)]) * (1.0 / len(ys))
        penalty = 1e-4 * fsum([p * p for p in params])
    else:
        data_loss = mean([relu(1 - y * s) for y, s in zip(ys, scores)])
        penalty = 1e-4 * dot(params, params)
    return data_loss + penalty, tuple(scores)


def example_loss(model: MLP, x: Example, y: float) -> Any:
    """The max-margin loss of ONE example: ``relu(1 - y * score)``."""
    return relu(1 - y * model(x))


def vmap_loss(model: MLP, xs: Sequence[Example], ys: Sequence[float]) -> Any:
    """:func:`loss` (fused style) written per example and mapped with vmap."""
    params = tree_leaves(model)
    return mean(vmap(example_loss, in_axes=(None, 0, 0))(model, xs, ys)) + 1e-4 * dot(params, params)


def vmap_scores(model: MLP, xs: Sequence[Example]) -> Any:
    return vmap(lambda m, x: m(x), in_axes=(None, 0))(model, xs)


def accuracy(scores: Sequence[float], ys: Sequence[float]) -> float:
    """The fraction of examples whose score has the label's sign."""
    return sum((y > 0) == (s > 0) for y, s in zip(ys, scores)) / len(ys)


@dataclass(frozen=True)
class Result:
    model: MLP
    losses: tuple[float, ...]
    accuracy: float  # before the last update, as micrograd reports it
    nodes_per_step: int
    seconds: float


def learning_rate(steps: int) -> Any:
    """The seed schedule ``k -> 1 - 0.9 k / steps``."""
    _check_steps("learning_rate", steps)
    return lambda k: 1.0 - 0.9 * k / steps


def _check_steps(fn: str, steps: Any) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"{fn}: steps must be an int >= 1, got {type(steps).__name__} {steps!r}")
    if steps < 1:
        raise ValueError(f"{fn}: steps must be an int >= 1 (the schedule spans the run), got {steps}")


def nodes_per_step(model: MLP, xs: Sequence[Example], ys: Sequence[float], *, vmap: bool = False) -> int:
    """Distinct nodes in one step's loss graph (inputs included); with ``vmap``, :func:`vmap_loss`'s."""
    if vmap:
        return count_nodes(trace(lambda m: vmap_loss(m, xs, ys))(model))
    return count_nodes(trace(lambda m: loss(m, xs, ys)[0])(model))


def train(
    model: MLP,
    xs: Sequence[Example],
    ys: Sequence[float],
    steps: int = 100,
    progress: TextIO | None = None,
    vmap: bool = False,
) -> Result:
    """Full-batch SGD on the max-margin loss; returns the trained model.
    With ``vmap``, the loss is :func:`vmap_loss` under jit (data static)."""
    _check_steps("train", steps)
    if len(xs) != len(ys) or not xs:
        raise ValueError(
            f"train: xs and ys must hold one label per example and at least one example, "
            f"got {len(xs)} examples and {len(ys)} labels"
        )
    opt = optim.sgd(learning_rate(steps))
    state = opt.init(model)
    step = value_and_grad(loss, has_aux=True)
    if vmap:
        xs, ys = tuple(tuple(x) for x in xs), tuple(ys)  # type: ignore[misc]  # static: hashable
        grad_step = jit(value_and_grad(vmap_loss), static_argnums=(1, 2))
        predict = jit(vmap_scores, static_argnums=1)

        def step(model: MLP, xs: Any, ys: Any) -> Any:
            value, grads = grad_step(model, xs, ys)
            return (value, predict(model, xs)), grads

    losses = []
    acc = 0.0
    start = time.perf_counter()
    for k in range(steps):
        (value, scores), grads = step(model, xs, ys)
        acc = accuracy(scores, ys)
        updates, state = opt.update(grads, state, model)
        model = optim.apply_updates(model, updates)
        losses.append(value)
        if progress is not None:
            _show(progress, k + 1, steps, value, acc)
    seconds = time.perf_counter() - start
    if progress is not None:
        progress.write("\n" if progress.isatty() else "")
    return Result(model, tuple(losses), acc, nodes_per_step(model, xs, ys, vmap=vmap), seconds)


def _show(out: TextIO, k: int, steps: int, value: float, acc: float) -> None:
    line = f"step {k:4d}/{steps}  loss {value:.4f}  accuracy {acc:6.1%}"
    if out.isatty():
        width = 24
        done = width * k // steps
        out.write(f"\r[{'#' * done}{'.' * (width - done)}] {line}")
        out.flush()
    elif k == steps or k % max(1, steps // 10) == 0:
        out.write(line + "\n")


def ascii_boundary(
    model: MLP, xs: Sequence[Example], ys: Sequence[float], width: int = 64, height: int = 24
) -> str:
    """The decision regions as characters, with the data drawn on top."""
    x0s, x1s = [x[0] for x in xs], [x[1] for x in xs]
    lo0, hi0 = min(x0s) - 0.25, max(x0s) + 0.25
    lo1, hi1 = min(x1s) - 0.25, max(x1s) + 0.25
    rows = []
    for r in range(height):
        b = hi1 - (r + 0.5) * (hi1 - lo1) / height
        rows.append(
            [
                "-" if model.with_style("fused")([lo0 + (c + 0.5) * (hi0 - lo0) / width, b]) > 0 else " "
                for c in range(width)
            ]
        )
    for (a, b), y in zip(xs, ys):
        c = min(width - 1, int((a - lo0) / (hi0 - lo0) * width))
        r = min(height - 1, int((hi1 - b) / (hi1 - lo1) * height))
        rows[r][c] = "o" if y > 0 else "x"
    legend = "o: class +1   x: class -1   '-': region scored > 0"
    return "\n".join("|" + "".join(row) + "|" for row in rows) + "\n" + legend


def _pyplot() -> Any:
    """matplotlib.pyplot on a file-only backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_boundary(model: MLP, xs: Sequence[Example], ys: Sequence[float], path: str) -> None:
    """Save the decision boundary as a PNG at ``path`` (needs matplotlib: fgrad[plot])."""
    plt = _pyplot()
    if plt is None:
        raise ImportError("plotting needs matplotlib: pip install 'fgrad[plot]'")
    fused = model.with_style("fused")
    x0s, x1s = [x[0] for x in xs], [x[1] for x in xs]
    lo0, hi0, lo1, hi1 = min(x0s) - 0.5, max(x0s) + 0.5, min(x1s) - 0.5, max(x1s) + 0.5
    n = 120
    g0 = [lo0 + i * (hi0 - lo0) / (n - 1) for i in range(n)]
    g1 = [lo1 + j * (hi1 - lo1) / (n - 1) for j in range(n)]
    z = [[1.0 if fused([a, b]) > 0 else 0.0 for a in g0] for b in g1]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(g0, g1, z, levels=[-0.5, 0.5, 1.5], colors=["#f4c7c3", "#c3d7f4"])
    ax.scatter(x0s, x1s, c=["#1f4e9c" if y > 0 else "#b3261e" for y in ys], s=18, edgecolors="k")
    ax.set_title("fgrad: two moons, decision boundary")
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)


DEFAULT_OUT = "moons.png"


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``, else a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _picture_path(out: str) -> str:
    """The file ``--out OUT`` names: ``OUT/moons.png`` for a directory, ``OUT.png`` without a suffix.

    Raises:
        ValueError: the picture could not be written there (says why).

    >>> _picture_path("boundary")
    'boundary.png'
    """
    if not out:
        raise ValueError("expected a file name or a directory, got ''")
    if os.path.isdir(out):
        out = os.path.join(out, DEFAULT_OUT)
    suffix = os.path.splitext(out)[1]
    if not suffix:
        out += ".png"
    elif suffix.lower() != ".png":
        raise ValueError(
            f"the picture is a PNG, so the name must end in .png (or have no suffix), got {out!r}"
        )
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ValueError(f"the directory {directory!r} does not exist; create it or choose another --out")
    if os.path.isdir(out):
        raise ValueError(f"{out!r} is a directory; name a file")
    writable = os.access(out, os.W_OK) if os.path.exists(out) else os.access(directory, os.W_OK | os.X_OK)
    if not writable:
        raise ValueError(f"cannot write {out!r} (permission denied); choose another --out, or --no-plot")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fgrad-demo", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=_int_at_least(1), default=100, help="training steps, >= 1 (default 100)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the weights and the data (default 0)")
    p.add_argument("--n", type=_int_at_least(2), default=100, help="number of examples, >= 2 (default 100)")
    p.add_argument("--style", choices=STYLES, default="fused", help="graph style (default fused)")
    p.add_argument("--fused", dest="style", action="store_const", const="fused", help="= --style fused")
    p.add_argument("--binary", dest="style", action="store_const", const="binary", help="= --style binary")
    p.add_argument(
        "--vmap",
        action="store_true",
        help="write the loss per example with fg.vmap, under fg.jit (fast with fgrad[numpy])",
    )
    drawing = p.add_mutually_exclusive_group()
    drawing.add_argument(
        "--out",
        help=f"where to save the boundary as a PNG: a file, or a directory to "
        f"hold {DEFAULT_OUT} (default {DEFAULT_OUT}; needs matplotlib)",
    )
    drawing.add_argument("--no-plot", action="store_true", help="draw nothing")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> Result:
    """Run the demo with command-line arguments ``argv``; returns the training result.

    Every argument is checked before training: a bad one exits with argparse's
    usage message and status 2. The ``fgrad-demo`` command is :func:`cli`.
    """
    out = sys.stdout if out is None else out
    p = _parser()
    args = p.parse_args(argv)
    plt = None if args.no_plot else _pyplot()
    png = None
    if plt is not None:
        try:
            png = _picture_path(DEFAULT_OUT if args.out is None else args.out)
        except ValueError as e:
            p.error(f"argument --out: {e}")
    elif args.out is not None:
        p.error(
            "argument --out: saving a PNG needs matplotlib (pip install 'fgrad[plot]'); without "
            "--out the boundary is drawn in characters"
        )

    xs, ys = moons(args.n, noise=0.1, seed=args.seed)
    model = MLP.init([2, 16, 16, 1], seed=args.seed, style=args.style)
    out.write(
        f"two moons: {len(xs)} examples, MLP 2-16-16-1 ({len(tree_leaves(model))} parameters), "
        f"{'vmap under jit, ' if args.vmap else ''}{args.style} graph, "
        f"{args.steps} SGD step{'' if args.steps == 1 else 's'}\n"
    )
    if args.vmap and not have_numpy():
        out.write(
            "numpy is not installed, so vmap runs its loop "
            "(pip install 'fgrad[numpy]' for the batched backend)\n"
        )
    result = train(model, xs, ys, args.steps, progress=out, vmap=args.vmap)
    out.write(
        f"final loss {result.losses[-1]:.6f}, accuracy {result.accuracy:.1%}, "
        f"{result.nodes_per_step} nodes per step, {result.seconds:.2f} s "
        f"({1000 * result.seconds / args.steps:.1f} ms per step)\n"
    )
    if png is not None:
        try:
            plot_boundary(result.model, xs, ys, png)
        except OSError as e:  # checked before training, but the disk may fill or the directory go
            p.exit(1, f"{p.prog}: error: cannot save the boundary to {png}: {e.strerror or e}\n")
        out.write(f"decision boundary saved to {png}\n")
    elif not args.no_plot:
        out.write(ascii_boundary(result.model, xs, ys) + "\n")
        out.write("(install fgrad[plot] for a PNG of the boundary)\n")
    return result


def cli(argv: Sequence[str] | None = None) -> int:
    """The ``fgrad-demo`` command: run :func:`main`, return the exit status (0).

    The console script calls ``sys.exit(cli())``: the result stays in Python,
    and Ctrl-C ends the run with status 130 and no traceback.
    """
    try:
        main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("\nfgrad-demo: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
