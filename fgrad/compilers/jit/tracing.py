"""Tracing a new jit path: ``f`` run once on nodes, then compiled.

The traced arguments' leaves become nodes of a fresh trace at jit's level
(1-D numpy arrays are shown to ``f`` as :class:`TracedArray`), comparisons
made on them are recorded as the path's guards, and ``codegen`` turns the
trace into code: compiled source, or a table-driven program above
``max_ops`` operations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fgrad.compilers.codegen import compile_trace
from fgrad.compilers.jit.calls import Layout, arguments_from, name_of
from fgrad.compilers.jit.edges import TracedArray, check_outputs, leaf_path
from fgrad.compilers.jit.paths import CompiledPath
from fgrad.compilers.numpycode.exactness import InexactGuard
from fgrad.compilers.treegen import unflattener
from fgrad.engine.core import Unbatchable, make_node
from fgrad.engine.trace import Trace, traced
from fgrad.engine.tree import tree_flatten
from fgrad.transforms.vmap import looping

__all__ = ["trace_path"]


def trace_path(
    fun: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    leaves: list[Any],
    layout: Layout,
    max_ops: int,
) -> CompiledPath:
    """The path ``fun(*args, **kwargs)`` takes, traced with ``leaves`` as the
    traced arguments' values (``layout`` says where they go) and compiled."""
    td, static, arrays = layout

    def body(tr: Trace) -> CompiledPath:
        tr.guards = []
        tr.concrete_ok = False
        nodes = [make_node(tr, x, None, ()) for x in leaves]
        seen: list[Any] = list(nodes)
        for k, _, _ in arrays:
            seen[k] = TracedArray(nodes[k], f"argument {leaf_path(td, k, static)}")
        out = fun(*arguments_from(args, seen, layout), **kwargs)
        outs, out_td = tree_flatten(out)
        outs = [o.node if type(o) is TracedArray else o for o in outs]
        check_outputs(outs, out_td, tr)
        run, source, n_guards = compile_trace(tr, nodes, outs, name_of(fun), max_ops)
        return CompiledPath(run, out_td, source, n_guards, unflattener(out_td))

    try:
        return traced("jit", body)
    except (InexactGuard, Unbatchable):
        # A guard on a value numpy code computes in its own order: the loop's
        # scalar code computes it as the trace does. Or a batch met scalar
        # code after vmap returned (a primitive's rule with a Python branch,
        # in the reverse pass), where vmap could no longer take its loop.
        return dataclasses.replace(looping(lambda: traced("jit", body)), traces=2)
