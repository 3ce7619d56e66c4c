"""viz: DOT export (checked by a DOT parser of our own and by `dot` when present),
formulas (evaluated back by a small safe evaluator), explain, graph_stats, draw."""

from __future__ import annotations

import io
import math
import operator
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import SLOW
from hypothesis import given
from hypothesis import strategies as st

import fgrad as fg
from fgrad.testing import expressions, floats_in
from fgrad.viz import draw, explain, formula, graph_stats, repr_svg, svg, to_dot

N_CHAIN = 1_000_000 if SLOW else 100_000
HOSTILE_KEYS = ['a"];\n} digraph evil {', "back\\slash\\", "<b>|{c}", "tab\there", "nul\x00", "\\l\\N"]


def loss(p: Any) -> Any:
    return fg.tanh(p["w"][3] * 3.0 + p["b"]) ** 2


PARAMS = {"w": [0.1, 0.2, 0.3, 0.5], "b": -1.0}


def shared(x: Any) -> Any:
    y = x * x + 1.0
    return y * fg.tanh(y) - y


# A small DOT parser: the subset to_dot writes, strictly ------------------------------------

_TOKEN = re.compile(
    r'\s+|(?P<arrow>->)|(?P<punct>[{}\[\];,=])|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|-?(?:\d+\.?\d*|\.\d+))",
    re.S,
)
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n"}


@dataclass
class DotGraph:
    nodes: dict[str, dict[str, str]]
    edges: list[tuple[str, str, dict[str, str]]]


def _unescape(e: re.Match[str]) -> str:
    return _UNESCAPE.get(e.group(1), e.group(0))


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"not DOT at {pos}: {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.lastgroup:
            value = m.group(m.lastgroup)
            if m.lastgroup == "string":
                value = re.sub(r"\\(.)", _unescape, value[1:-1], flags=re.S)
            tokens.append((m.lastgroup, value))
    return tokens


def parse_dot(text: str) -> DotGraph:
    toks = tokenize(text)
    pos = 0

    def take(kind: str, value: str | None = None) -> str:
        nonlocal pos
        k, v = toks[pos]
        if k != kind or (value is not None and v != value):
            raise ValueError(f"expected {value or kind} at token {pos}, got {v!r}")
        pos += 1
        return v

    def attrs() -> dict[str, str]:
        out: dict[str, str] = {}
        if toks[pos] != ("punct", "["):
            return out
        take("punct", "[")
        while toks[pos] != ("punct", "]"):
            key = take("id")
            take("punct", "=")
            out[key] = take(toks[pos][0])
            if toks[pos] == ("punct", ","):
                take("punct", ",")
        take("punct", "]")
        return out

    take("id", "digraph")
    take("id")
    take("punct", "{")
    graph = DotGraph({}, [])
    while toks[pos] != ("punct", "}"):
        name = take("id")
        if toks[pos] == ("punct", "="):
            take("punct", "=")
            take(toks[pos][0])
        elif toks[pos] == ("arrow", "->"):
            take("arrow")
            head = take("id")
            assert name in graph.nodes and head in graph.nodes, "edges join declared nodes"
            graph.edges.append((name, head, attrs()))
        else:
            a = attrs()
            if name not in ("node", "edge", "graph"):
                assert re.fullmatch(r"n\d+", name) and name not in graph.nodes
                graph.nodes[name] = a
        take("punct", ";")
    take("punct", "}")
    assert pos == len(toks), "nothing after the graph"
    return graph


def heads(graph: DotGraph) -> list[str]:
    return [a["label"].split("\n")[0] for a in graph.nodes.values()]


def test_the_dot_parser_rejects_broken_text() -> None:
    with pytest.raises((ValueError, AssertionError, IndexError)):
        parse_dot('digraph g { n0 [label="a"]; n0 -> n1; }')
    with pytest.raises((ValueError, AssertionError, IndexError)):
        parse_dot('digraph g { n0 [label="a"]; "x"]; }')


# to_dot ------------------------------------------------------------------------------------


def test_to_dot_draws_each_node_once_with_op_value_and_tree_paths() -> None:
    out = fg.trace(loss)(PARAMS)
    graph = parse_dot(to_dot(out))
    assert len(graph.nodes) == fg.count_nodes(out) == 6  # w[0..2] do not reach the output
    assert sorted(heads(graph)) == ["add", "b", "mul(_, 3.0)", "pow(_, 2)", "tanh", "w[3]"]
    tanh = next(a for a in graph.nodes.values() if a["label"].startswith("tanh"))
    assert tanh["label"].split("\n")[1] == f"value {math.tanh(0.5 * 3.0 - 1.0):.6g}"


def test_shared_nodes_are_drawn_once_with_an_edge_per_use() -> None:
    out = fg.trace(shared)(0.5)
    graph = parse_dot(to_dot(out))
    assert len(graph.nodes) == fg.count_nodes(out) == 6
    assert len(graph.edges) == sum(sum(type(a) is fg.Expr for a in n.args) for n in fg.reachable([out]))
    assert heads(graph).count("x") == 1


def test_leaves_of_several_arguments_are_numbered() -> None:
    out = fg.trace(lambda a, p: a * p["w"] + p["in"][1])(2.0, {"w": 3.0, "in": [1.0, 2.0]})
    assert {"x0", "x1.w", "x1.in[1]"} <= set(heads(parse_dot(to_dot(out))))


def test_outputs_are_marked_and_edges_name_argument_order() -> None:
    out = fg.trace(lambda x, y: {"d": x - y, "q": y / x})(1.0, 2.0)
    graph = parse_dot(to_dot(out))
    marked = sorted(a["label"].split("\n")[-1] for a in graph.nodes.values() if a.get("peripheries") == "2")
    assert marked == ["out['d']", "out['q']"]
    assert sorted(e[2]["label"] for e in graph.edges) == ["0", "0", "1", "1"]


def test_gradients_from_grad_match_computed_adjoints_on_the_inputs() -> None:
    out = fg.trace(loss)(PARAMS)
    given_grads = parse_dot(to_dot(out, grads=(fg.grad(loss)(PARAMS),)))
    computed = parse_dot(to_dot(out, grads="compute"))
    g = fg.grad(loss)(PARAMS)
    for a in given_grads.nodes.values():
        lines = a["label"].split("\n")
        if lines[0] == "w[3]":
            assert lines[2] == f"grad {g['w'][3]:.6g}"
    leaves_given = {lab: a["label"] for lab, a in zip(heads(given_grads), given_grads.nodes.values())}
    leaves_computed = {lab: a["label"] for lab, a in zip(heads(computed), computed.nodes.values())}
    for name in ("b", "w[3]"):
        assert leaves_given[name] == leaves_computed[name]
    assert all("grad" in a["label"] for a in computed.nodes.values())


def test_gradients_in_the_shape_grad_returns_for_one_argument_are_accepted() -> None:
    out = fg.trace(loss)(PARAMS)
    assert to_dot(out, grads=fg.grad(loss)(PARAMS)) == to_dot(out, grads=(fg.grad(loss)(PARAMS),))


def test_gradients_of_the_wrong_size_are_refused_with_the_counts() -> None:
    out = fg.trace(loss)(PARAMS)
    with pytest.raises(ValueError, match="grads has 1 leaves but the traced inputs have 5"):
        to_dot(out, grads=1.0)
    with pytest.raises(ValueError, match="grads must be None, 'compute'"):
        to_dot(out, grads="all")
    with pytest.raises(ValueError, match="one scalar output"):
        to_dot(fg.trace(lambda x: (x, x * 2.0))(1.0), grads="compute")


def test_hostile_dict_keys_and_primitive_names_cannot_break_the_dot_text() -> None:
    evil = fg.Primitive('op"];\n}\r\x00<x>|{', impl=lambda x: x, vjp=lambda g, out, x: (g,))
    params = {k: float(i) for i, k in enumerate(HOSTILE_KEYS)}
    out = fg.trace(lambda p: evil(fg.sum(list(p.values()))))(params)
    text = to_dot(out, grads="compute")
    graph = parse_dot(text)
    assert len(graph.nodes) == len(HOSTILE_KEYS) + 2
    assert sorted(h for h in heads(graph) if h.startswith("x[")) == sorted(f"x[{k!r}]" for k in HOSTILE_KEYS)
    assert 'op"];' in heads(graph)  # the newline in the name is a line break of the label
    assert "\x00" not in text and "\r" not in text and "\t" not in text


def test_graphs_of_nested_transforms_show_concrete_values() -> None:
    texts: list[str] = []

    def f(x: Any) -> Any:
        inner = fg.trace(lambda y: y * x + 1.0)(3.0)  # nodes whose values are nodes of grad
        texts.append(to_dot(inner, grads="compute"))
        return x * x

    fg.grad(f)(2.0)
    labels = [a["label"] for a in parse_dot(texts[0]).nodes.values()]
    assert any("value 7\ngrad 1" in lab for lab in labels)


@given(expressions(n_inputs=3, max_steps=10), st.lists(floats_in(-2.0, 2.0), min_size=3, max_size=3))
def test_random_graphs_export_to_dot_that_parses(f: Any, xs: list[float]) -> None:
    out = fg.trace(f)(*xs)
    graph = parse_dot(to_dot(out, grads="compute"))
    assert len(graph.nodes) == fg.count_nodes(out)
    nodes = fg.reachable([out])
    assert len(graph.edges) == sum(sum(type(a) is fg.Expr for a in n.args) for n in nodes)
    assert all(int(a[1:]) < int(b[1:]) for a, b, _ in graph.edges)  # arguments come first


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_the_dot_program_reads_the_export_including_hostile_labels() -> None:
    evil = fg.Primitive('op"];\n}\\', impl=lambda x: x, vjp=lambda g, out, x: (g,))
    params = {k: float(i) for i, k in enumerate(HOSTILE_KEYS)}
    for out in (fg.trace(loss)(PARAMS), fg.trace(lambda p: evil(fg.sum(list(p.values()))))(params)):
        text = to_dot(out, grads="compute")
        done = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert sum(line.startswith("node ") for line in done.stdout.splitlines()) == fg.count_nodes(out)


# formula -----------------------------------------------------------------------------------

_FORMULA_TOKEN = re.compile(
    r"\s+|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*)"
    r"|(?P<op>\*\*|[-+*/(),=\[\]])"
)
_FUNCS: dict[str, Any] = {
    name: getattr(fg, name)
    for name in ("tanh", "sin", "cos", "sigmoid", "exp", "log", "sqrt", "abs", "relu", "maximum", "minimum")
}
_FUNCS.update(sum=lambda xs: fg.sum(xs), dot=fg.dot, stop_gradient=fg.stop_gradient)
_BINARY: dict[str, Any] = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": fg.div}
_CONSTANTS = {"inf": math.inf, "nan": math.nan}


class Line:
    """A recursive-descent parser that evaluates one line of formula() text as it parses."""

    def __init__(self, line: str, env: dict[str, Any]) -> None:
        self.line, self.env, self.pos = line, env, 0
        found = [(m.lastgroup, m.group(m.lastgroup)) for m in _FORMULA_TOKEN.finditer(line) if m.lastgroup]
        assert "".join(v for _, v in found) == line.replace(" ", ""), f"untokenizable: {line!r}"
        self.toks: list[tuple[str, str]] = found

    def peek(self) -> str | None:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.pos]
        assert expected is None or tok[1] == expected, f"expected {expected} in {self.line!r}"
        self.pos += 1
        return tok

    def expr(self) -> Any:
        v = self.term()
        while self.peek() in ("+", "-"):
            v = _BINARY[self.take()[1]](v, self.term())
        return v

    def term(self) -> Any:
        v = self.unary()
        while self.peek() in ("*", "/"):
            v = _BINARY[self.take()[1]](v, self.unary())
        return v

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        base = self.atom()
        if self.peek() == "**":
            self.take()
            return fg.power(base, self.unary())
        return base

    def items(self, close: str) -> list[Any]:
        out = []
        while self.peek() != close:
            out.append(self.expr())
            if self.peek() == ",":
                self.take()
        self.take(close)
        return out

    def atom(self) -> Any:
        kind, v = self.take()
        if kind == "num":
            return float(v) if any(c in v for c in ".eE") else int(v)
        if v == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if v == "[":
            return self.items("]")
        assert kind == "name", f"unexpected {v!r} in {self.line!r}"
        if self.peek() != "(":
            return self.env[v]
        self.take("(")
        return _FUNCS[v](*self.items(")"))

    def run(self) -> tuple[str | None, Any]:
        """(name, value) of a ``let`` line, (None, value) of an expression."""
        name = None
        if self.toks and self.toks[0][1] == "let":
            name = self.toks[1][1]
            self.pos = 3
        value = self.expr()
        assert self.pos == len(self.toks), f"trailing text in {self.line!r}"
        return name, value


def evaluate(text: str, env: dict[str, float]) -> Any:
    """Evaluate formula() text (let lines, + - * / ** unary -, calls, lists) without eval."""
    scope: dict[str, Any] = {**_CONSTANTS, **env}
    value: Any = None
    for line in text.split("\n"):
        name, value = Line(line, scope).run()
        if name is not None:
            scope[name] = value
    return value


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize(
    "f, expected",
    [
        (lambda a, b, c: a - (b - c), "x0 - (x1 - x2)"),
        (lambda a, b, c: (a - b) - c, "x0 - x1 - x2"),
        (lambda a, b, c: a + (b + c), "x0 + (x1 + x2)"),
        (lambda a, b, c: a / (b * c), "x0 / (x1 * x2)"),
        (lambda a, b, c: (a + b) * c, "(x0 + x1) * x2"),
        (lambda a, b, c: (a**b) ** c, "(x0 ** x1) ** x2"),
        (lambda a, b, c: a ** (b**c), "x0 ** x1 ** x2"),
        (lambda a, b, c: (-a) ** 2 + -(b * c), "(-x0) ** 2 + -(x1 * x2)"),
        (lambda a, b, c: a**-b - operator.neg(-c), "x0 ** (-x1) - -(-x2)"),
        (lambda a, b, c: a * -1.5 + (-2.0) ** b, "x0 * -1.5 + (-2.0) ** x1"),
        (
            lambda a, b, c: fg.dot([a, b], [c, 0.5], 0.25) + fg.sum([a, b, c]),
            "dot([x0, x1], [x2, 0.5], 0.25) + sum([x0, x1, x2])",
        ),
        (
            lambda a, b, c: fg.maximum(a, 2.0) / fg.sqrt(b * b + c * c),
            "maximum(x0, 2.0) / sqrt(x1 * x1 + x2 * x2)",
        ),
    ],
)
def test_formulas_use_the_fewest_parentheses_that_keep_the_meaning(f: Any, expected: str) -> None:
    xs = (1.5, 0.5, 2.0)
    out = fg.trace(f)(*xs)
    assert formula(out) == expected
    assert same(evaluate(formula(out), {"x0": xs[0], "x1": xs[1], "x2": xs[2]}), out.value)


def test_shared_subexpressions_are_named_once() -> None:
    text = formula(fg.trace(shared)(0.5))
    assert text == "let t1 = x * x + 1.0\nt1 * tanh(t1) - t1"


def test_let_names_avoid_the_names_of_inputs() -> None:
    params = {"t1": 0.5, "t2": 1.0}
    out = fg.trace(lambda p: shared(p["t1"]) + p["t2"])(params)
    text = formula(out)
    assert "let tt1 = t1 * t1 + 1.0" in text
    assert same(evaluate(text, params), out.value)


def test_a_doubling_graph_gives_a_formula_of_linear_size() -> None:
    def doubling(x: Any) -> Any:
        for _ in range(60):
            x = x * x + x  # inlined, this would have 2**60 leaves
        return x

    out = fg.trace(doubling)(0.001)
    text = formula(out)
    assert len(text) < 40 * fg.count_nodes(out)
    assert same(evaluate(text, {"x": 0.001}), out.value)


def test_several_outputs_give_one_line_each() -> None:
    out = fg.trace(lambda x, y: [x * y, fg.tanh(x), 2.0])(1.0, 2.0)
    assert formula(out) == "out[0] = x0 * x1\nout[1] = tanh(x0)\nout[2] = 2.0"


@given(
    expressions(n_inputs=2, max_steps=12),
    st.lists(floats_in(-3.0, 3.0), min_size=2, max_size=2),
    st.sampled_from([1, 2, 24]),
)
def test_formulas_evaluate_back_to_the_node_value(f: Any, xs: list[float], max_depth: int) -> None:
    out = fg.trace(f)(*xs)
    text = formula(out, max_depth=max_depth)
    assert same(evaluate(text, {"x0": xs[0], "x1": xs[1]}), out.value), text


def test_node_reprs_stay_short_on_big_graphs() -> None:
    def deep(x: Any) -> Any:
        for _ in range(1000):
            x = fg.tanh(x) + x
        return x

    assert len(repr(fg.trace(deep)(0.5))) < 80


# explain -----------------------------------------------------------------------------------


def gradients_section(text: str) -> dict[str, float]:
    lines = text.split("\n")
    start = lines.index("gradients") + 1
    return {name: float(v) for name, v in (line.rsplit(None, 1) for line in lines[start:] if line)}


def test_explain_prints_the_table_and_returns_it() -> None:
    sink = io.StringIO()
    text = explain(lambda p: loss(p), file=sink)(PARAMS)
    assert sink.getvalue() == text
    assert text.startswith("forward pass (creation order)\nnode  op     inputs")
    assert "reverse pass" in text and "input.grad now" in text
    assert set(gradients_section(text)) == {"b", "w[0]", "w[1]", "w[2]", "w[3]"}


def test_explain_adjoints_equal_grad_exactly() -> None:
    text = explain(shared, digits=17, file=io.StringIO())(0.7)
    assert gradients_section(text) == {"x": fg.grad(shared)(0.7)}
    text = explain(loss, digits=17, file=io.StringIO())(PARAMS)
    g = fg.grad(loss)(PARAMS)
    assert gradients_section(text) == {"b": g["b"], **{f"w[{i}]": g["w"][i] for i in range(4)}}


def test_explain_shows_each_accumulation_into_a_shared_node() -> None:
    text = explain(shared, file=io.StringIO())(0.7)
    reverse = text.split("\n\n")[1].split("\n")[2:]
    assert sum(row.split()[-4] == "t2" for row in reverse if len(row.split()) >= 4) == 3  # t2 used 3 times


@given(expressions(n_inputs=2, max_steps=10), st.lists(floats_in(-3.0, 3.0), min_size=2, max_size=2))
def test_explain_agrees_with_grad_on_random_functions(f: Any, xs: list[float]) -> None:
    text = explain(f, argnums=(0, 1), digits=17, file=io.StringIO())(*xs)
    g = fg.grad(f, argnums=(0, 1))(*xs)
    got = gradients_section(text)
    assert same(got["x0"], g[0]) and same(got["x1"], g[1])


def test_explain_uses_parameter_names_and_reports_constants() -> None:
    text = explain(lambda rate, y: rate * y, argnums=(0, 1), file=io.StringIO())(2.0, 3.0)
    assert gradients_section(text) == {"rate": 3.0, "y": 2.0}
    text = explain(lambda x: 5.0, file=io.StringIO())(1.0)
    assert "every gradient is 0" in text


def test_explain_refuses_large_graphs_and_bad_argnums() -> None:
    def big(x: Any) -> Any:
        for _ in range(300):
            x = x * 1.01
        return x

    with pytest.raises(ValueError, match="301 nodes.*graph_stats"):
        explain(big, file=io.StringIO())(1.0)
    with pytest.raises(ValueError, match="argnums=2"):
        explain(lambda x: x, argnums=2)(1.0)


# graph_stats --------------------------------------------------------------------------------


def test_graph_stats_counts_primitives_leaves_and_depth() -> None:
    s = graph_stats(fg.trace(loss)(PARAMS))
    assert (s.nodes, s.leaves, s.constants, s.edges, s.depth) == (6, 2, 2, 5, 5)
    assert s.per_primitive == {"add": 1, "mul": 1, "pow": 1, "tanh": 1}
    assert list(s.per_primitive) == sorted(s.per_primitive)
    assert str(s).startswith("6 nodes (2 inputs, 4 ops), 5 edges, 2 constant arguments, depth 5")


def test_graph_stats_of_a_constant_is_empty() -> None:
    s = graph_stats(3.0)
    assert (s.nodes, s.depth, s.per_primitive) == (0, 0, {})


# draw ---------------------------------------------------------------------------------------


def test_draw_without_graphviz_says_which_extra_to_install(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    out = fg.trace(loss)(PARAMS)
    with pytest.raises(ImportError, match=r"pip install 'fgrad\[viz\]'"):
        draw(out, tmp_path / "g.svg")
    assert repr_svg(out) is None  # Jupyter falls back to the text repr
    assert to_dot(out).startswith("digraph")  # DOT text needs nothing


def test_draw_refuses_graphs_too_large_to_read(tmp_path: Any) -> None:
    out = fg.trace(lambda x: fg.sum([x * float(i) for i in range(600)]))(1.0)
    with pytest.raises(ValueError, match=r"602 nodes.*fg\.graph_stats.*max_nodes="):
        draw(out, tmp_path / "g.svg")
    assert repr_svg(out) is None
    assert not (tmp_path / "g.svg").exists()


def test_draw_needs_a_known_suffix(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="names no format"):
        draw(fg.trace(loss)(PARAMS), tmp_path / "g.jpeg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_draw_renders_with_graphviz(tmp_path: Any, suffix: str, magic: bytes) -> None:
    pytest.importorskip("graphviz")
    out = fg.trace(loss)(PARAMS)
    path = draw(out, tmp_path / f"g{suffix}", grads="compute")
    assert path.read_bytes().startswith(magic)
    assert "<svg" in svg(out) and repr_svg(out) == svg(out)


# Scale: iterative all the way ---------------------------------------------------------------


def test_a_long_chain_exports_without_recursion() -> None:
    def chain(x: Any) -> Any:
        for _ in range((N_CHAIN - 1) // 2):
            x = fg.sin(x) + 0.5
        return x

    out = fg.trace(chain)(0.3)
    n = fg.count_nodes(out)
    assert n >= N_CHAIN - 1
    text = to_dot(out)
    assert text.count(" -> ") == n - 1
    stats = graph_stats(out)
    assert stats.depth == n and stats.per_primitive == {"add": n // 2, "sin": n // 2}
    maths = formula(out)
    assert maths.count("\n") == (n - 1) // 24  # a let line each 24 levels
    if not SLOW:
        assert len(parse_dot(text).nodes) == n
        assert same(evaluate(maths, {"x": 0.3}), out.value)
    with pytest.raises(ValueError, match=f"{n} nodes"):
        draw(out, "never.svg")
