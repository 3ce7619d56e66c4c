"""Counts of a graph: :func:`graph_stats` and the :class:`GraphStats` it returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fgrad.engine.core import Expr
from fgrad.viz.common import graph_of, table


@dataclass(frozen=True)
class GraphStats:
    """Counts of a graph (see :func:`graph_stats`); ``per_primitive`` is sorted by name."""

    nodes: int
    leaves: int
    constants: int
    edges: int
    depth: int
    per_primitive: dict[str, int]

    def __str__(self) -> str:
        head = f"{self.nodes} nodes ({self.leaves} inputs, {self.nodes - self.leaves} ops), "
        head += f"{self.edges} edges, {self.constants} constant arguments, depth {self.depth}"
        return "\n".join([head, *table([[f"  {k}", str(v)] for k, v in self.per_primitive.items()])])


def graph_stats(out: Any) -> GraphStats:
    """Count the graph of ``out``: nodes per primitive, inputs (``leaves``), edges, ``depth`` (the
    longest path, in nodes) and ``constants`` (non-node arguments, the 1.0 of ``x * x + 1.0``).

    >>> import fgrad as fg
    >>> s = graph_stats(fg.trace(lambda x: fg.tanh(x * x + 1.0))(0.5))
    >>> s.nodes, s.leaves, s.depth, s.per_primitive
    (4, 1, 4, {'add': 1, 'mul': 1, 'tanh': 1})
    """
    _, _, nodes, index = graph_of(out)
    depth, per, constants, edges = [1] * len(nodes), Counter(n.prim.name for n in nodes if n.prim), 0, 0
    for i, n in enumerate(nodes):
        if n.prim is not None:
            for a in n.args:
                if type(a) is Expr:
                    edges += 1
                    depth[i] = max(depth[i], depth[index[id(a)]] + 1)
                else:
                    constants += 1
    n_leaves, per_primitive = sum(n.prim is None for n in nodes), dict(sorted(per.items()))
    return GraphStats(len(nodes), n_leaves, constants, edges, max(depth, default=0), per_primitive)
