"""fgrad: functional automatic differentiation for plain Python scalar code.

>>> import fgrad as fg
>>> grads = fg.grad(lambda p: p["w"] * p["x"] + fg.tanh(p["b"]))({"w": 2.0, "x": 3.0, "b": 0.0})
>>> sorted(grads.items())       # grads is a PMap, like the params' structure
[('b', 1.0), ('w', 3.0), ('x', 2.0)]

Layout, bottom up (a module imports only from its own layer and those below):
    engine/       Expr nodes, Primitive, bind; traces and levels; guards; pytrees
    primitives/   every operation with its rules; Python's operators on nodes
    transforms/   grad, vjp, jvp, linearize, jacobians, custom rules, Taylor
                  mode (derivatives), vmap and its batches
    compilers/    jit: straight-line code, table programs, compiled pytree
                  walks, vmap's numpy code
    the library, imported by name:
    nn            Neuron / Layer / MLP as frozen dataclasses
    optim         optimisers as pairs of pure functions (init, update)
    datasets      small data sets in pure Python (two moons)
    io            save / load pytrees: readable JSON, atomic writes, safe loading
    testing       numerical derivatives, check_grads, hypothesis strategies
    viz           DOT export, drawing, formulas, explain, graph_stats
    debug         debug_nans: raise at the first nan
    demo          the two-moons demo (fgrad-demo)
"""

from fgrad import datasets, io, nn, optim, viz
from fgrad.compilers.jit import jit
from fgrad.debug import NanError, debug_nans, set_debug_nans
from fgrad.engine.core import EscapedNodeError, Expr, Primitive
from fgrad.engine.core import apply as bind
from fgrad.engine.guards import TraceGuardError, value_of
from fgrad.engine.tree import (
    TreeDef,
    static_field,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)
from fgrad.io import load, save
from fgrad.primitives import operators  # noqa: F401 - operators installs Expr's
from fgrad.primitives.basic import div, stop_gradient
from fgrad.primitives.elementary import cos, exp, log, sigmoid, sin, sqrt, tanh
from fgrad.primitives.piecewise import abs_ as abs
from fgrad.primitives.piecewise import maximum, minimum, relu
from fgrad.primitives.powers import power
from fgrad.primitives.reductions import dot, mean, sum
from fgrad.primitives.rounding import ceil, floor, floor_divide, mod, round, trunc
from fgrad.transforms.autodiff import grad, jvp, linearize, trace, value_and_grad, vjp
from fgrad.transforms.custom import custom_jvp, custom_vjp
from fgrad.transforms.graph import count_nodes, reachable
from fgrad.transforms.jacobians import hessian, jacfwd, jacobian, jacrev
from fgrad.transforms.taylor import derivatives
from fgrad.transforms.vmap import vmap
from fgrad.viz import GraphStats, draw, explain, formula, graph_stats, to_dot

# Jupyter shows nodes as drawings when graphviz is installed; core cannot
# import viz (imports point one way), so the hook is attached here.
Expr._repr_svg_ = viz.repr_svg  # type: ignore[attr-defined]

__version__ = "0.2.0.dev0"  # the one source of the version: pyproject.toml reads it

__all__ = [
    "datasets",
    "io",
    "nn",
    "optim",
    "save",
    "load",
    "viz",
    "GraphStats",
    "draw",
    "explain",
    "formula",
    "graph_stats",
    "to_dot",
    "EscapedNodeError",
    "Expr",
    "NanError",
    "Primitive",
    "TraceGuardError",
    "bind",
    "debug_nans",
    "set_debug_nans",
    "count_nodes",
    "reachable",
    "abs",
    "cos",
    "div",
    "dot",
    "exp",
    "log",
    "maximum",
    "mean",
    "minimum",
    "power",
    "relu",
    "sigmoid",
    "sin",
    "sqrt",
    "stop_gradient",
    "sum",
    "tanh",
    "floor",
    "ceil",
    "trunc",
    "round",
    "floor_divide",
    "mod",
    "value_of",
    "grad",
    "trace",
    "value_and_grad",
    "vjp",
    "jvp",
    "linearize",
    "jacobian",
    "jacfwd",
    "jacrev",
    "hessian",
    "custom_vjp",
    "custom_jvp",
    "derivatives",
    "jit",
    "vmap",
    "TreeDef",
    "static_field",
    "tree_flatten",
    "tree_leaves",
    "tree_map",
    "tree_structure",
    "tree_unflatten",
]
