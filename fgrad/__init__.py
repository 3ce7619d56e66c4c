"""fgrad: functional automatic differentiation for plain Python scalar code.

>>> import fgrad as fg
>>> grads = fg.grad(lambda p: p["w"] * p["x"] + fg.tanh(p["b"]))({"w": 2.0, "x": 3.0, "b": 0.0})
>>> sorted(grads.items())       # grads is a PMap, like the params' structure
[('b', 1.0), ('w', 3.0), ('x', 2.0)]

Module map:
    core        Expr nodes, Primitive, traces and levels, bind, operators
    ops         the other primitives (exp, tanh, relu, sum, dot, ...)
    graph       tape walks: reverse and forward passes, reachability
    tree        pytrees: flatten / unflatten / map over containers
    transforms  grad, value_and_grad, trace
    nn          Neuron / Layer / MLP as frozen dataclasses
    optim       optimisers as pairs of pure functions (init, update)
    datasets    small data sets in pure Python (two moons)
    testing     numerical derivatives, check_grads, hypothesis strategies
"""

from . import datasets, nn, optim
from .core import EscapedNodeError, Expr, Primitive, TraceGuardError, bind
from .graph import count_nodes, reachable
from .ops import (
    cos,
    div,
    dot,
    exp,
    log,
    maximum,
    mean,
    minimum,
    power,
    relu,
    sigmoid,
    sin,
    sqrt,
    stop_gradient,
    sum,
    tanh,
)
from .ops import abs_ as abs
from .transforms import grad, trace, value_and_grad
from .tree import (
    TreeDef,
    static_field,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)

__version__ = "0.1.0"

__all__ = [
    "datasets", "nn", "optim",
    "EscapedNodeError", "Expr", "Primitive", "TraceGuardError", "bind",
    "count_nodes", "reachable",
    "abs", "cos", "div", "dot", "exp", "log", "maximum", "mean", "minimum", "power",
    "relu", "sigmoid", "sin", "sqrt", "stop_gradient", "sum", "tanh",
    "grad", "trace", "value_and_grad",
    "TreeDef", "static_field", "tree_flatten", "tree_leaves", "tree_map",
    "tree_structure", "tree_unflatten",
]
