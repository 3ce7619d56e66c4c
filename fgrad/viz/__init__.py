"""Seeing graphs: DOT export, drawing, formulas, a backprop lesson, statistics.

Every walk is iterative and linear in the graph.

The views live in the modules of this package: :mod:`fgrad.viz.dot` (``to_dot``,
``draw``, ``svg``, ``repr_svg``), :mod:`fgrad.viz.text` (``formula``,
``explain``) and :mod:`fgrad.viz.stats` (``graph_stats``); what they share (the
nodes in order, input names, adjoints) is in :mod:`fgrad.viz.common`.
"""

from __future__ import annotations

from fgrad.viz.dot import draw, repr_svg, svg, to_dot
from fgrad.viz.stats import GraphStats, graph_stats
from fgrad.viz.text import explain, formula

__all__ = ["to_dot", "draw", "svg", "repr_svg", "formula", "explain", "graph_stats", "GraphStats"]
