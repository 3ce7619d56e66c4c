"""Where a compiled training step's time goes: pytree walks versus the code.

Times, on the moons MLP (2-16-16-1 and 100 examples, or ``--width`` and
``--batch``), the whole training step (vmap loss, value_and_grad, SGD or
``--optimizer adam``) under one ``fg.jit`` with the numpy backend, split into
its parts: flattening the arguments, running the compiled program,
rebuilding the outputs; and an eager update (``update`` then
``apply_updates``) on the same model. Best of ``--repeats`` runs of
``--number`` calls each, in microseconds.

    pip install '.[bench]' && python benchmarks/overhead.py
    python benchmarks/overhead.py --width 128 --optimizer adam --number 20
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import fgrad as fg
from fgrad import optim
from fgrad.datasets import moons
from fgrad.demo import learning_rate, vmap_loss
from fgrad.nn import MLP


def best_us(fn: Callable[[], Any], number: int, repeats: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeats)) / number * 1e6


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--number", type=int, default=500, help="calls per timed run (default 500)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs, best kept (default 7)")
    p.add_argument("--width", type=int, default=16, help="the hidden layers' width (default 16)")
    p.add_argument("--batch", type=int, default=100, help="examples (default 100)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    args = p.parse_args(argv)

    xs, ys = moons(args.batch, noise=0.1, seed=1337)
    data = (tuple(map(tuple, xs)), tuple(ys))
    model = MLP.init([2, args.width, args.width, 1], seed=1337)
    opt = optim.sgd(learning_rate(100)) if args.optimizer == "sgd" else optim.adam(0.01)

    def train_step(model: MLP, state: Any, xs: Any, ys: Any) -> Any:
        value, grads = fg.value_and_grad(vmap_loss)(model, xs, ys)
        updates, state = opt.update(grads, state, model)
        return optim.apply_updates(model, updates), state, value

    step = fg.jit(train_step, static_argnums=(2, 3))
    state = opt.init(model)
    for _ in range(3):  # trace, compile, and reach the steady state (a float step count)
        model, state, _ = step(model, state, *data)

    key, leaves, layout = step._split((model, state, *data), {})
    path = step._paths[step._by_key[key][-1]]
    flat = path.run(leaves)
    assert path.build is not None
    grads = fg.grad(vmap_loss)(model, *data)
    result = {
        "step": best_us(lambda: step(model, state, *data), args.number, args.repeats),
        "flatten and key": best_us(lambda: step._split((model, state, *data), {}), args.number, args.repeats),
        "compiled code": best_us(lambda: path.run(leaves), args.number, args.repeats),
        "rebuild": best_us(lambda: path.build(flat), args.number, args.repeats),
        f"eager {args.optimizer} update + apply": best_us(
            lambda: optim.apply_updates(model, opt.update(grads, state, model)[0]), args.number, args.repeats
        ),
    }
    for name, us in result.items():
        print(f"{name:>26}: {us:8.1f} us")
    return result


if __name__ == "__main__":
    main()
