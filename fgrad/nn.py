"""Neural nets as frozen dataclasses that are pytrees: Neuron, Layer, MLP.

A model is a value. ``fg.grad(loss)(model)`` returns gradients as a model of
the same shape, and an optimiser step returns a new model; nothing is mutated.
Weights live in PVectors; sizes, activation and the graph style are static
fields, carried in the tree structure rather than differentiated.

Graph styles (the same numbers, different graphs):
    ``"fused"``   one ``fg.dot`` node per neuron (with its bias), then relu
    ``"sum"``     n multiplications and one n-ary ``fg.sum``
    ``"binary"``  ``sum(w * x for ...) + b`` with Python's ``sum``: 2n nodes
"""

from __future__ import annotations

import builtins
import numbers
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyrsistent import PVector, pvector

from fgrad.engine.tree import static_field
from fgrad.primitives.piecewise import relu
from fgrad.primitives.reductions import dot
from fgrad.primitives.reductions import sum as fsum

__all__ = ["Neuron", "Layer", "MLP", "STYLES"]

STYLES = ("fused", "sum", "binary")


def _check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return style


@dataclass(frozen=True)
class Neuron:
    """``act(b + sum(w_i * x_i))`` with ``act`` relu when ``nonlin`` else identity.

    >>> Neuron(pvector([2.0, -1.0]), 0.5)([1.0, 3.0])
    0.0
    >>> Neuron(pvector([2.0, -1.0]), 0.5, nonlin=False)([1.0, 3.0])
    -0.5
    """

    w: PVector[Any]
    b: Any
    nonlin: bool = static_field(default=True)

    def __call__(self, x: Sequence[Any], style: str = "fused") -> Any:
        w, b = self.w, self.b
        if len(x) != len(w):
            raise ValueError(f"Neuron: expected {len(w)} inputs, got {len(x)}")
        if style == "fused":
            act = dot(w, x, bias=b)
        elif style == "sum":
            act = fsum([*(wi * xi for wi, xi in zip(w, x)), b])
        else:
            act = builtins.sum((wi * xi for wi, xi in zip(w, x)), b)
        return relu(act) if self.nonlin else act


@dataclass(frozen=True)
class Layer:
    """A row of neurons applied to the same inputs; returns a tuple."""

    neurons: PVector[Neuron]

    def __call__(self, x: Sequence[Any], style: str = "fused") -> tuple[Any, ...]:
        return tuple(n(x, style) for n in self.neurons)


@dataclass(frozen=True)
class MLP:
    """A multilayer perceptron: relu hidden layers and a linear last layer.

    Build one with :meth:`MLP.init`. Calling it on a sequence of floats or
    nodes returns a tuple of outputs, or a single scalar when the last layer
    has one neuron.

    >>> model = MLP.init([2, 3, 1], seed=0)
    >>> type(model([0.5, -0.5])) is float
    True
    """

    layers: PVector[Layer]
    style: str = static_field(default="fused")

    @staticmethod
    def init(sizes: Sequence[int], seed: int = 0, style: str = "fused", nonlin_last: bool = False) -> MLP:
        """A seeded MLP with weights uniform in (-1, 1) and zero biases.

        Args:
            sizes: ``[n_inputs, hidden..., n_outputs]``, positive ints.
            seed: seeds a private ``random.Random`` (no global state).
            style: ``"fused"``, ``"sum"`` or ``"binary"`` (see the module doc).
            nonlin_last: apply relu to the last layer too.

        Returns:
            An MLP whose parameters flatten in the order layer, neuron, then
            weights followed by the bias.
        """
        sizes = list(sizes)
        if len(sizes) < 2 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in sizes
        ):
            raise ValueError(
                f"MLP.init: sizes must list at least 2 positive ints "
                f"([n_inputs, ..., n_outputs]), got {sizes!r}"
            )
        _check_style(style)
        rng = random.Random(seed)
        layers = []
        for i, (nin, nout) in enumerate(zip(sizes, sizes[1:])):
            nonlin = nonlin_last or i < len(sizes) - 2
            layers.append(
                Layer(
                    pvector(
                        Neuron(pvector([rng.uniform(-1.0, 1.0) for _ in range(nin)]), 0.0, nonlin)
                        for _ in range(nout)
                    )
                )
            )
        return MLP(pvector(layers), style)

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(n_inputs, layer sizes...)``."""
        return (len(self.layers[0].neurons[0].w),) + tuple(len(l.neurons) for l in self.layers)

    def with_style(self, style: str) -> MLP:
        """The same parameters, evaluated with another graph style."""
        return replace(self, style=_check_style(style))

    def __call__(self, x: Sequence[Any]) -> Any:
        n_in = len(self.layers[0].neurons[0].w)
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__") or len(x) != n_in:
            got = f"length {len(x)}" if hasattr(x, "__len__") else type(x).__name__
            raise ValueError(
                f"MLP: expected an input sequence of {n_in} numbers, got {got}; "
                f"pass one example at a time, e.g. model([x1, x2])"
            )
        out: Sequence[Any] = x
        for layer in self.layers:
            out = layer(out, self.style)
        return out[0] if len(out) == 1 else out
