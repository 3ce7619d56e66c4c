"""jit: bit-for-bit equal to eager, structures kept, cache and guards, safety of
the generated source, table mode for very large programs, threads."""

from __future__ import annotations

import ast
import math
import re
import struct
import sys
import threading
from collections import namedtuple
from typing import Any

import pytest
from conftest import SLOW
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap, pvector

import fgrad as fg
import fgrad.compilers.codegen as codegen
from fgrad import demo
from fgrad.datasets import moons
from fgrad.nn import MLP
from fgrad.testing import expressions, floats_in

jit_module = sys.modules["fgrad.compilers.jit"]  # fg.jit is the function; the module is here


def bits(tree: Any) -> list[Any]:
    """The leaves' float bits; every nan counts as one value (payloads may differ)."""
    out: list[Any] = []
    for leaf in fg.tree_leaves(tree):
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            x = float(leaf)
            out.append("nan" if x != x else struct.pack("<d", x))
        else:
            out.append(leaf)
    return out


def assert_same(got: Any, want: Any) -> None:
    """Bit-for-bit equal leaves in the same structure (container types included)."""
    assert fg.tree_structure(got) == fg.tree_structure(want)
    assert bits(got) == bits(want)


def twice(step: Any, *args: Any) -> list[Any]:
    """The first call of a new path traces, compiles and runs it, later ones
    only run it: check both."""
    return [step(*args), step(*args)]


# Bit for bit, on random expressions and on the seed workload ----------------------------


@given(
    expressions(n_inputs=2),
    st.lists(st.tuples(floats_in(-2.0, 2.0), floats_in(-2.0, 2.0)), min_size=1, max_size=3),
)
def test_jit_of_value_and_grad_is_bit_for_bit_eager_on_random_functions(
    f: Any, points: list[tuple[float, float]]
) -> None:
    vg = fg.value_and_grad(f, argnums=(0, 1))
    step = fg.jit(vg)
    plain = fg.jit(f)
    for x, y in points:
        for got in twice(step, x, y):
            assert_same(got, vg(x, y))
        for got in twice(plain, x, y):
            assert_same(got, f(x, y))
    info = step.cache_info()
    assert info.hits + info.misses == 2 * len(points) and info.misses == info.traces


@pytest.mark.parametrize("style", ["fused", "binary"])
def test_the_seed_workload_is_bit_for_bit_and_keeps_the_model_type(style: str) -> None:
    xs, ys = moons(12, noise=0.1, seed=1)
    model = MLP.init([2, 16, 16, 1], seed=0, style=style)

    def loss(m: MLP, xs: Any, ys: Any) -> Any:
        return demo.loss(m, xs, ys)[0]

    vg = fg.value_and_grad(loss)
    step = fg.jit(vg)
    for _ in range(3):
        value, grads = step(model, xs, ys)
        assert_same((value, grads), vg(model, xs, ys))
        assert type(grads) is MLP and grads.style == style
        assert isinstance(grads.layers, PVector) and isinstance(grads.layers[0].neurons[0].w, PVector)
        model = fg.tree_map(lambda p, g: p - 0.1 * g, model, grads)
    assert step.cache_info() == (1, 2, 1, 1)


def test_containers_come_back_as_the_function_returns_them() -> None:
    Pair = namedtuple("Pair", ["a", "b"])

    def f(p: Any) -> Any:
        return {"sum": p["w"] + p["b"], "pair": Pair(p["w"], p["b"] * 2.0), "v": pvector([p["w"]])}

    step = fg.jit(f)
    out = twice(step, pmap({"w": 1.0, "b": 2.0}))[1]
    assert type(out) is dict and type(out["pair"]) is Pair and isinstance(out["v"], PVector)
    grads = fg.jit(fg.grad(lambda p: p["w"] * p["b"]))(pmap({"w": 1.0, "b": 2.0}))
    assert isinstance(grads, PMap) and grads == pmap({"w": 2.0, "b": 1.0})


def test_jit_of_nested_and_forward_transforms_equals_eager() -> None:
    def f(x: Any) -> Any:
        return fg.tanh(x) * x**3 + fg.sin(x * x)

    for x in (0.3, -1.2):
        assert_same(twice(fg.jit(fg.grad(fg.grad(f))), x)[1], fg.grad(fg.grad(f))(x))
        assert_same(twice(fg.jit(fg.grad(fg.grad(fg.grad(f)))), x)[1], fg.grad(fg.grad(fg.grad(f)))(x))
    jvp = lambda x, v: fg.jvp(f, (x,), (v,))  # noqa: E731
    step = fg.jit(jvp)
    for x, v in ((0.3, 1.0), (-1.2, 2.5)):
        for got in twice(step, x, v):
            assert_same(got, jvp(x, v))

    def loss(p: Any) -> Any:
        return fg.exp(p["w"] * p["b"]) + p["w"] ** 3

    params = pmap({"w": 0.5, "b": -1.5})
    step_h = fg.jit(fg.hessian(loss))
    for got in twice(step_h, params):
        assert_same(got, fg.hessian(loss)(params))
        assert isinstance(got, PMap) and isinstance(got["w"], PMap)
    hvp = fg.jit(lambda x, v: fg.jvp(fg.grad(loss), (x,), (v,))[1])
    assert_same(twice(hvp, params, {"w": 1.0, "b": 0.0})[1], fg.hessian(loss)(params)["w"])


def test_jit_of_vjp_and_linearize_equals_eager() -> None:
    def f(p: Any) -> Any:
        return {"a": fg.tanh(p[0] * p[1]), "b": p[0] ** 3}

    pull = lambda x, g: fg.vjp(f, x)[1](g)  # noqa: E731
    push = lambda x, v: fg.linearize(f, x)[1](v)  # noqa: E731
    x = [0.3, 0.7]
    for got in twice(fg.jit(pull), x, {"a": 1.0, "b": 2.0}):
        assert_same(got, pull(x, {"a": 1.0, "b": 2.0}))
        assert isinstance(got, tuple) and isinstance(got[0], PVector)
    for got in twice(fg.jit(push), x, [1.0, -2.0]):
        assert_same(got, push(x, [1.0, -2.0]))


# The cache --------------------------------------------------------------------------------


def test_cache_info_counts_traces_hits_misses_and_entries() -> None:
    step = fg.jit(lambda x: fg.tree_map(lambda v: v * 2.0, x))
    info = step.cache_info()
    assert info._fields == ("traces", "hits", "misses", "entries")
    assert info == (0, 0, 0, 0)
    step(1.0)
    assert step.cache_info() == (1, 0, 1, 1)
    step(2.0)
    step(3)  # an int leaf has the structure of a float leaf
    assert step.cache_info() == (1, 2, 1, 1)
    step([1.0])  # a new structure: a new trace
    assert step.cache_info() == (2, 2, 2, 2)
    step.source(5.0)  # looking at a cached path is not a call
    assert step.cache_info() == (2, 2, 2, 2)
    assert step.cache_info().traces == 2 and step.cache_info().entries == 2


def test_static_argnums_are_hashed_into_the_key() -> None:
    calls: list[Any] = []

    def power(x: Any, n: int) -> Any:
        calls.append(n)
        return x**n

    step = fg.jit(power, static_argnums=1)
    assert step(2.0, 3) == 8.0 and step(3.0, 3) == 27.0
    assert step.cache_info().traces == 1
    assert step(2.0, 4) == 16.0  # a different static value: traced again
    assert step.cache_info().traces == 2 and calls == [3, 4]
    assert step(2.0, 3) == 8.0 and step.cache_info().traces == 2
    negative = fg.jit(power, static_argnums=(-1,))
    assert negative(2.0, 5) == 32.0 and negative(2.0, 5) == 32.0
    assert negative.cache_info().traces == 1


def test_equal_static_values_of_different_types_do_not_share_a_path() -> None:
    # 3 == 3.0 and 1 == True hash alike; a path traced for one must not serve the other.
    def f(x: Any, n: Any) -> Any:
        return x * n if isinstance(n, float) else x + n

    step = fg.jit(f, static_argnums=1)
    for n in (3, 3.0, 3, 1, True, 1.0):
        assert step(2.0, n) == f(2.0, n), n
        assert step(2.0, n) == f(2.0, n), n


def test_an_unhashable_static_argument_is_a_clear_error() -> None:
    step = fg.jit(lambda x, shape: x * len(shape), static_argnums=1)
    with pytest.raises(TypeError, match="must be hashable.*tuples"):
        step(2.0, [3, 4])
    assert step(2.0, (3, 4)) == 4.0
    with pytest.raises(ValueError, match="static_argnums names argument 2"):
        fg.jit(lambda x: x, static_argnums=2)(1.0)


def test_strings_as_static_arguments_select_code() -> None:
    step = fg.jit(lambda x, act: fg.tanh(x) if act == "tanh" else fg.relu(x), static_argnums=1)
    assert step(-1.0, "relu") == 0.0 and step(-1.0, "relu") == 0.0
    assert step(-1.0, "tanh") == math.tanh(-1.0) and step(-1.0, "tanh") == math.tanh(-1.0)
    assert step.cache_info().traces == 2


# Guards -------------------------------------------------------------------------------------


def test_guards_give_the_right_value_and_gradient_on_both_sides_and_cache_both_paths() -> None:
    def f(x: Any) -> Any:
        return x * 2 if x > 0 else -x

    step = fg.jit(fg.value_and_grad(f))
    for x in (3.0, -3.0, 1.5, -0.5, 2.0, -4.0):
        assert step(x) == ((2 * x, 2.0) if x > 0 else (-x, -1.0))
    assert step.cache_info() == (2, 4, 2, 2)
    assert "raise GUARD" in step.source(1.0) and "raise GUARD" in step.source(-1.0)
    assert step.source(1.0) != step.source(-1.0)
    plain = fg.jit(f)
    assert [plain(x) for x in (3.0, -3.0, 3.0, -3.0)] == [6.0, 3.0, 6.0, 3.0]


def test_guards_hold_at_the_boundary() -> None:
    step = fg.jit(fg.value_and_grad(lambda x: x * 2 if x > 0 else -x))
    assert step(1.0) == (2.0, 2.0)
    assert step(0.0) == (0.0, -1.0)  # x > 0 fails at 0: the other path
    assert step(0.0) == (0.0, -1.0) and step(1e-300) == (2e-300, 2.0)


def test_a_loop_on_traced_values_takes_one_path_per_iteration_count() -> None:
    def newton_sqrt(a: Any) -> Any:
        x = a
        while abs(x * x - a) > 1e-12 * a:
            x = 0.5 * (x + a / x)
        return x

    vg = fg.value_and_grad(newton_sqrt)
    step = fg.jit(vg)
    for a in (2.0, 3.0, 2.0, 100.0, 2.5, 1e6, 3.0, 1e6):
        assert_same(step(a), vg(a))
        assert math.isclose(step(a)[1], 0.5 / math.sqrt(a), rel_tol=1e-9)
    assert step.cache_info().traces == 3


def test_comparisons_between_traced_values_and_builtins_that_compare_are_guarded() -> None:
    middle = fg.jit(lambda x, y, z: sorted([x, y, z])[1] * 2.0)
    for args in [(1.0, 2.0, 3.0), (3.0, 1.0, 2.0), (2.0, 3.0, 1.0), (1.5, 2.0, 3.0), (3.0, 1.0, 2.5)]:
        assert middle(*args) == sorted(args)[1] * 2.0
    assert middle.cache_info().traces == 3
    clip = fg.jit(fg.grad(lambda x, y: max(x, y) * min(x, y) if 0.0 < x < 1.0 else x * y * y))
    for x, y in ((0.5, 0.2), (0.5, 0.9), (2.0, 0.9), (0.25, 0.1), (-1.0, 3.0)):
        assert clip(x, y) == fg.grad(lambda x, y: max(x, y) * min(x, y) if 0.0 < x < 1.0 else x * y * y)(x, y)


def test_the_cache_is_a_bounded_lru_over_paths() -> None:
    def f(x: Any) -> Any:
        if x > 1:
            return x + 1.0
        return x - 1.0 if x > 0 else x * 3.0

    step = fg.jit(f, cache_size=2)
    for x in (2.0, 0.5, -1.0):
        assert step(x) == f(x)
    assert step.cache_info().entries == 2 and step.cache_info().traces == 3
    assert step(-2.0) == -6.0 and step(0.25) == -0.75  # the two newest paths are kept
    assert step.cache_info().traces == 3
    assert step(3.0) == 4.0  # the oldest was dropped: traced again
    assert step.cache_info() == (4, 2, 4, 2)
    # The least recently *used* path goes: held now are 0.5's and 3.0's; touching
    # 0.5's makes 3.0's the one a new path (-1.0's) evicts.
    step(0.75)
    step(-5.0)
    assert step.cache_info().traces == 5
    step(0.75)
    assert step.cache_info().traces == 5
    step(5.0)
    assert step.cache_info() == (6, 4, 6, 2)
    with pytest.raises(ValueError, match="cache_size"):
        fg.jit(f, cache_size=0)


# Traced values that become plain numbers, and non-numeric leaves ---------------------------


@pytest.mark.parametrize(
    "convert, what",
    [(float, r"float\(\)"), (int, r"int\(\)"), (math.sin, r"float\(\)"), (math.exp, r"float\(\)")],
)
def test_a_concrete_number_from_a_traced_value_explains_why_and_what_to_do(convert: Any, what: str) -> None:
    step = fg.jit(lambda x: convert(x))
    with pytest.raises(fg.TraceGuardError, match=what + " of a traced value inside jit") as info:
        step(1.5)
    message = str(info.value)
    assert "compiles the function once" in message and "static_argnums" in message
    assert isinstance(info.value, TypeError)
    with pytest.raises(fg.TraceGuardError):
        fg.jit(fg.grad(lambda x: x * float(x)))(1.5)  # also under a nested transform


def test_float_of_a_traced_value_is_refused_and_value_of_reads_it_as_a_constant() -> None:
    with pytest.raises(fg.TraceGuardError, match="would drop its derivative"):
        fg.grad(lambda x: x * float(x))(3.0)
    assert fg.grad(lambda x: x * fg.value_of(x))(3.0) == 3.0
    assert fg.grad(fg.jit(lambda x: x * fg.value_of(x)))(3.0) == 3.0


def test_a_string_leaf_in_a_traced_argument_suggests_static_argnums() -> None:
    step = fg.jit(lambda p: p["x"] * 2.0 if p["act"] == "double" else p["x"])
    with pytest.raises(TypeError, match=r"leaf at \[0\]\['act'\] is a str.*static_argnums"):
        step({"x": 1.0, "act": "double"})
    with pytest.raises(TypeError, match=r"leaf at \[0\] is a bool"):
        fg.jit(lambda b: b)(True)
    fixed = fg.jit(lambda x, act: x * 2.0 if act == "double" else x, static_argnums=1)
    assert fixed(1.0, "double") == 2.0 and fixed(1.0, "double") == 2.0


# The generated source ------------------------------------------------------------------------

HOSTILE = ['"); import os; os.system("echo hacked") #', "\n", "{}", "__import__('os')", "'''", "\\"]
OWN_NAMES = re.compile(r"^([xvrf]\d+|K|NAN|INF|GUARD|DIV|DOT|SUM|leaves|compiled)$")


def names_in(source: str) -> set[str]:
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args}
    names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Attribute, ast.Import, ast.ImportFrom))]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return names


def test_hostile_dict_keys_never_reach_the_source() -> None:
    params = {k: float(i + 1) for i, k in enumerate(HOSTILE)}

    def f(p: Any) -> Any:
        return fg.sum([p[k] * p[k] for k in HOSTILE]) + fg.tanh(p["{}"])

    step = fg.jit(fg.value_and_grad(f))
    for got in twice(step, params):
        assert_same(got, fg.value_and_grad(f)(params))
        assert set(got[1]) == set(HOSTILE)
    source = step.source(params)
    for key in HOSTILE:
        if key.strip():
            assert key not in source
    assert "os" not in re.findall(r"[A-Za-z_]+", source) and "hacked" not in source
    assert all(OWN_NAMES.match(n) for n in names_in(source)), names_in(source)


def test_hostile_names_of_primitives_and_functions_never_reach_the_source() -> None:
    # A primitive's name is a user string too; one that smuggled a statement into
    # the generated code would run it on every call.
    name = 'double\n    raise RuntimeError("injected")  #'
    double = fg.Primitive(name, impl=lambda x: 2.0 * x, vjp=lambda g, out, x: (2.0 * g,))

    def f(x: Any) -> Any:
        return double(x) + 1.0

    f.__name__ = 'f\nraise RuntimeError("injected")'
    step = fg.jit(f)
    assert twice(step, 1.0) == [3.0, 3.0] and step(2.0) == 5.0
    source = step.source(2.0)
    assert "injected" not in source and name not in source
    assert all(OWN_NAMES.match(n) for n in names_in(source))
    assert fg.jit(fg.grad(f))(2.0) == 2.0 and fg.jit(fg.grad(f))(3.0) == 2.0


def test_the_source_has_one_statement_per_operation_and_only_names_it_made() -> None:
    def f(x: Any, y: Any) -> Any:
        return fg.exp(x * y) + fg.sin(x)

    step = fg.jit(f)
    assert step(0.5, 2.0) == f(0.5, 2.0)
    source = step.source(0.5, 2.0)
    assert source.startswith("def compiled(leaves):")
    assert "2 inputs, 4 operations, 0 guards" in source.splitlines()[0]
    body = [line.strip() for line in source.splitlines()[1:]]
    ops = [line for line in body if re.match(r"^\w+ = .*# \w+$", line)]
    assert [line.rsplit("# ", 1)[1] for line in ops] == ["mul", "exp", "sin", "add"]
    assert body[0] == "x0, x1, = leaves" and body[-1].startswith("return (")
    assert len(body) == len(ops) + 2
    assert all(OWN_NAMES.match(n) for n in names_in(source))
    compile(source, "<test>", "exec")  # the shown source is valid Python


def test_multiplying_by_one_and_subtracting_zero_are_kept_as_eager_code_does_them() -> None:
    # x * 1.0 is x but for a signaling nan, which it quiets: compiled code keeps
    # every operation eager code does (found by review: dropped, they changed bits).
    def f(x: Any, y: Any) -> Any:
        return [x * 1.0, (1 * y) / 1.0, x - 0.0, y - 0, 1.0 * x / 1, fg.tanh(x * 1.0 + y)]

    signaling = struct.unpack("<d", bytes.fromhex("0100000000 00f07f".replace(" ", "")))[0]
    step = fg.jit(f)
    for x, y in ((0.5, -2.0), (signaling, signaling), (signaling, 1.0)):
        for got in twice(step, x, y):
            assert [struct.pack("<d", v) for v in got] == [struct.pack("<d", v) for v in f(x, y)]
    relu_grad = fg.grad(lambda w, x: w * fg.relu(x), argnums=(0, 1))
    assert [struct.pack("<d", v) for v in fg.jit(relu_grad)(signaling, 2.0)] == [
        struct.pack("<d", v) for v in relu_grad(signaling, 2.0)
    ]


def test_common_subexpressions_are_computed_once() -> None:
    def f(x: Any, y: Any) -> Any:
        a = fg.exp(x * y)
        b = fg.exp(x * y)  # the same computation, a separate node
        return a * fg.sin(x * y) + b

    step = fg.jit(f)
    for got in twice(step, 0.5, 2.0):
        assert_same(got, f(0.5, 2.0))
    source = step.source(0.5, 2.0)
    assert source.count("# exp") == 1 and source.count("# mul") == 2 and source.count("# sin") == 1


@pytest.mark.parametrize(
    "f",
    [
        lambda x: x + 0.0,
        lambda x: 0.0 + x,
        lambda x: x - 0.0,
        lambda x: x - (-0.0),
        lambda x: x + (-0.0),
        lambda x: x * 1.0,
        lambda x: x / 1.0,
        lambda x: 1 * x,
        lambda x: x - 0,
        lambda x: x * 0.0,
        lambda x: -x,
    ],
    ids=["x+0.0", "0.0+x", "x-0.0", "x-(-0.0)", "x+(-0.0)", "x*1.0", "x/1.0", "1*x", "x-0", "x*0.0", "-x"],
)
@pytest.mark.parametrize("x", [-0.0, 0.0, 1.5, math.inf, -math.inf, math.nan])
def test_simplifications_keep_every_bit_including_signed_zeros(f: Any, x: float) -> None:
    step = fg.jit(f)
    for got in twice(step, x):
        assert_same(got, f(x))


def test_plus_zero_is_kept_because_it_turns_negative_zero_positive() -> None:
    step = fg.jit(lambda x: x + 0.0)
    results = twice(step, -0.0)
    assert all(math.copysign(1.0, r) == 1.0 for r in results)  # (-0.0) + 0.0 == +0.0
    assert "+ 0.0" in step.source(-0.0)


# Very large graphs and the table-driven mode ------------------------------------------------


@pytest.fixture
def table_programs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the programs code generation turns into tables (spied on)."""
    made: list[int] = []
    real = codegen._table

    def spy(program: Any, returns: Any, n_inputs: int) -> Any:
        made.append(sum(1 for ins in program if ins[0] == "op"))
        return real(program, returns, n_inputs)

    monkeypatch.setattr(codegen, "_table", spy)
    return made


def test_a_graph_of_a_hundred_thousand_nodes_works_under_jit(
    monkeypatch: pytest.MonkeyPatch, table_programs: list[int]
) -> None:
    n = 1_000_000 if SLOW else 100_000
    if not SLOW:
        # Above MAX_COMPILED_OPS a path runs as a table; 10^6 nodes cross the default
        # threshold, 10^5 a lowered one (compiling 10^5 statements takes a second).
        monkeypatch.setattr(jit_module, "MAX_COMPILED_OPS", n // 2)
    assert n > jit_module.MAX_COMPILED_OPS

    def chain(x: Any) -> Any:
        for _ in range(n):
            x = fg.tanh(x)
        return x

    step = fg.jit(chain)
    for x in (0.5, -2.0):
        for got in twice(step, x):
            assert_same(got, chain(x))
    assert table_programs == [n]
    assert f"{n} operations" in step.source(0.5).splitlines()[0]
    assert step.cache_info() == (1, 3, 1, 1)


def _branchy(x: Any, y: Any) -> Any:
    z = fg.tanh(x * y + 2.0) * x if x > 0.5 else x * x
    if z + y > 3.0:
        z = z * fg.exp(-y)
    return fg.relu(z - 0.1) - 1.5 / y + fg.dot([x, y], [z, z], bias=1.0) + fg.sum([z, x, y])


POINTS = [(1.0, 2.0), (1.0, 2.0), (0.2, 2.0), (0.3, 2.0), (2.0, 4.0), (2.0, 1.0), (-1.0, 0.5), (0.2, 4.0)]


@pytest.mark.parametrize("transform", ["value", "value_and_grad", "hessian"])
def test_table_mode_equals_compiled_mode_bit_for_bit_including_guards(
    transform: str, monkeypatch: pytest.MonkeyPatch, table_programs: list[int]
) -> None:
    fn: Any = {
        "value": _branchy,
        "value_and_grad": fg.value_and_grad(_branchy, argnums=(0, 1)),
        "hessian": fg.hessian(_branchy, argnums=(0, 1)),
    }[transform]
    compiled = fg.jit(fn)
    want = [compiled(x, y) for x, y in POINTS] + [compiled(x, y) for x, y in POINTS]
    assert table_programs == []
    monkeypatch.setattr(jit_module, "MAX_COMPILED_OPS", 3)
    table = fg.jit(fn)
    got = [table(x, y) for x, y in POINTS] + [table(x, y) for x, y in POINTS]
    for g, w, (x, y) in zip(got, want + want, POINTS + POINTS):
        assert_same(g, w)
        assert_same(g, fn(x, y))
    assert table.cache_info() == compiled.cache_info()
    assert table.cache_info().traces >= 3  # several paths, so guards failed over
    assert len(table_programs) == table.cache_info().traces and min(table_programs) > 3
    # The source is still produced for a table-driven path, and reads the same.
    assert table.source(1.0, 2.0).splitlines()[0] == compiled.source(1.0, 2.0).splitlines()[0]


def test_max_compiled_ops_argument_selects_the_table_too(table_programs: list[int]) -> None:
    fn = fg.value_and_grad(_branchy, argnums=(0, 1))
    table = fg.jit(fn, max_compiled_ops=0)
    for x, y in POINTS:
        for got in twice(table, x, y):
            assert_same(got, fn(x, y))
    assert len(table_programs) == table.cache_info().traces >= 3
    with pytest.raises(ValueError, match="max_compiled_ops"):
        fg.jit(fn, max_compiled_ops=-1)


# jit under other transforms, and threads ---------------------------------------------------


def test_jit_inside_grad_just_runs_the_function() -> None:
    inner = fg.jit(lambda x: fg.sin(x) * x * x)
    want = math.cos(0.7) * 0.49 + 2 * 0.7 * math.sin(0.7)
    assert math.isclose(fg.grad(inner)(0.7), want, rel_tol=1e-15)
    assert math.isclose(fg.jvp(inner, (0.7,), (1.0,))[1], want, rel_tol=1e-15)
    assert math.isclose(fg.grad(fg.grad(inner))(0.7), fg.grad(fg.grad(inner.fun))(0.7), rel_tol=1e-15)
    assert inner.cache_info() == (0, 0, 0, 0)
    outer = fg.jit(lambda x: fg.jit(lambda y: y * 3.0)(x) + 1.0)  # jit of jit
    assert twice(outer, 2.0) == [7.0, 7.0]
    assert fg.jit(fg.grad(inner))(0.7) == fg.grad(inner)(0.7)


def test_threads_calling_one_jitted_function_get_the_sequential_results() -> None:
    def f(p: Any, x: Any) -> Any:
        h = fg.tanh(p["w"] * x + p["b"])
        return h * h if h > 0 else -h

    vg = fg.value_and_grad(f)
    params = pmap({"w": 0.7, "b": -0.2})
    xs = [(-1) ** i * 0.05 * i for i in range(60)]
    want = [vg(params, x) for x in xs]
    step = fg.jit(vg)
    start = threading.Barrier(8)
    results: list[Any] = [None] * 8
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait()
            results[k] = [step(params, x) for x in xs]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert r is not None and len(r) == len(want)
        for got, w in zip(r, want):
            assert_same(got, w)
    info = step.cache_info()
    assert info.hits + info.misses == 8 * len(xs) and info.misses == info.traces
    assert 2 <= info.entries <= 64
