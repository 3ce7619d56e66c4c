"""User mistakes raise clear errors: what happened, where, and what to do."""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
from pyrsistent import pmap, pvector

import fgrad as fg

Point = namedtuple("Point", ["x", "y"])


@dataclass(frozen=True)
class Layer:
    w: Any
    b: Any


# Non-scalar outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, shown",
    [
        ([1.0, 2.0, 3.0], "list of 3"),
        ((1.0, 2.0), "tuple of 2"),
        ({"a": 1.0}, "dict of 1"),
        (pvector([1.0, 2.0]), "PVector of 2"),
        (pmap({"a": 1.0}), "PMap of 1"),
        (None, "NoneType"),
        ("text", "str"),
        (True, "bool"),
        (1j, "complex"),
    ],
    ids=["list", "tuple", "dict", "PVector", "PMap", "None", "str", "bool", "complex"],
)
def test_grad_of_a_non_scalar_output_says_scalar_and_suggests_fg_sum(out: Any, shown: str) -> None:
    with pytest.raises(TypeError, match=rf"scalar.*{shown}.*fg\.sum"):
        fg.grad(lambda x: out)(1.0)
    with pytest.raises(TypeError, match="scalar"):
        fg.value_and_grad(lambda x: out)(1.0)


def test_non_scalar_output_of_nodes_is_refused_too() -> None:
    with pytest.raises(TypeError, match=r"scalar.*list of 2.*fg\.sum"):
        fg.grad(lambda x: [x, x * 2.0])(1.0)


def test_the_fix_suggested_for_a_non_scalar_output_exists() -> None:
    with pytest.raises(TypeError) as info:
        fg.grad(lambda x: [x, x])(1.0)
    suggested = re.findall(r"\bfg\.(\w+)", str(info.value))
    assert suggested, "the message should name the fgrad function to use"
    missing = [name for name in suggested if not hasattr(fg, name)]
    assert not missing, f"the error message suggests fg.{missing[0]}, which fgrad does not have"


# Bad leaves in differentiated arguments --------------------------------------------------------


@pytest.mark.parametrize(
    "leaf, kind",
    [("text", "str"), (1j, "complex"), (True, "bool"), (object(), "object"), (b"x", "bytes")],
    ids=["str", "complex", "bool", "object", "bytes"],
)
def test_a_non_real_leaf_names_the_argument_path_and_the_type(leaf: Any, kind: str) -> None:
    with pytest.raises(TypeError, match=rf"argument 0\['w'\].*{kind}.*not a real number"):
        fg.grad(lambda p: p["b"])({"w": leaf, "b": 1.0})


def test_a_bool_leaf_error_says_to_use_a_float() -> None:
    with pytest.raises(TypeError, match="use a float"):
        fg.grad(lambda x: 1.0)(False)


def test_a_bad_leaf_of_a_non_scalar_leaf_suggests_making_it_a_constant() -> None:
    with pytest.raises(TypeError, match="argnums"):
        fg.grad(lambda p: 1.0)({"name": "mlp"})


@pytest.mark.parametrize(
    "call, where",
    [
        (lambda: fg.grad(lambda a: 1.0)("text"), r"argument 0 "),
        (lambda: fg.grad(lambda a, b: 1.0, argnums=1)(1.0, [1.0, "s"]), r"argument 1\[1\]"),
        (
            lambda: fg.grad(lambda a, b: 1.0, argnums=(0, 1))(1.0, Point(1.0, {"q": None, "r": "s"})),
            r"argument 1\.y\['r'\]",
        ),
        (lambda: fg.grad(lambda a: 1.0)(Layer(1.0, [2.0, "s"])), r"argument 0\.b\[1\]"),
        (lambda: fg.grad(lambda a, b: 1.0, argnums=(1,))(1.0, pmap({"k": ["s"]})), r"argument 1\['k'\]\[0\]"),
        (lambda: fg.value_and_grad(lambda a, b: 1.0, argnums=-1)(1.0, ("s",)), r"argument 1\[0\]"),
    ],
    ids=["bare", "list", "namedtuple+dict", "dataclass", "PMap+list", "negative argnums"],
)
def test_a_bad_leaf_is_located_by_its_full_path(call: Any, where: str) -> None:
    with pytest.raises(TypeError, match=where):
        call()


def test_non_differentiated_arguments_may_hold_anything() -> None:
    assert fg.grad(lambda w, meta: w * 2.0)(1.0, {"name": "x", "obj": object()}) == 2.0


# argnums -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argnums", [2, -3, (0, 2), (5,)])
def test_argnums_out_of_range(argnums: Any) -> None:
    with pytest.raises(ValueError, match=r"argnums.*2 positional argument"):
        fg.grad(lambda a, b: a * b, argnums=argnums)(1.0, 2.0)


def test_argnums_with_no_positional_arguments() -> None:
    # (was "called with 0 positional argument(s); pick indices from 0 to -1")
    with pytest.raises(ValueError, match="called with no positional arguments; pass the argument"):
        fg.grad(lambda: 1.0)()


@pytest.mark.parametrize("argnums", ["0", 1.0, None, True, (0, "1"), (0, 1.0), (False,)])
def test_argnums_of_a_bad_type(argnums: Any) -> None:
    with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints"):
        fg.grad(lambda a, b: a * b, argnums=argnums)(1.0, 2.0)


def test_argnums_empty_or_repeated() -> None:
    with pytest.raises(ValueError, match="empty"):
        fg.grad(lambda a: a, argnums=())(1.0)
    with pytest.raises(ValueError, match="twice"):
        fg.grad(lambda a: a, argnums=(0, 0))(1.0)
    with pytest.raises(ValueError, match="twice"):
        fg.grad(lambda a: a, argnums=(0, -1))(1.0)


# has_aux -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, shown",
    [
        (lambda x: x, "Expr"),
        (lambda x: 1.0, "float"),
        (lambda x: (x, 1.0, 2.0), "tuple of length 3"),
        (lambda x: (x,), "tuple of length 1"),
        (lambda x: None, "NoneType"),
    ],
    ids=["node", "float", "triple", "single", "None"],
)
def test_has_aux_function_not_returning_a_pair(result: Any, shown: str) -> None:
    with pytest.raises(TypeError, match=rf"has_aux=True.*pair.*{shown}"):
        fg.grad(result, has_aux=True)(1.0)
    with pytest.raises(TypeError, match="pair"):
        fg.value_and_grad(result, has_aux=True)(1.0)


def test_has_aux_with_a_non_scalar_main_output() -> None:
    with pytest.raises(TypeError, match="scalar"):
        fg.grad(lambda x: ([x], 1.0), has_aux=True)(1.0)


# Escaped nodes -------------------------------------------------------------------------------------


def _escaped_node() -> Any:
    saved = []

    def f(x: Any) -> Any:
        saved.append(x * 2.0)
        return x

    fg.grad(f)(1.0)
    return saved[0]


@pytest.mark.parametrize(
    "use",
    [
        lambda n: n + 1.0,
        lambda n: 1.0 + n,
        lambda n: n * n,
        lambda n: n - 1,
        lambda n: 1 / n,
        lambda n: n**2,
        lambda n: 2.0**n,
        lambda n: -n,
        lambda n: abs(n),
        lambda n: fg.exp(n),
        lambda n: fg.maximum(n, 0.0),
        lambda n: fg.sum([1.0, n]),
        lambda n: fg.dot([n], [1.0], bias=0.0),
        lambda n: fg.grad(lambda y: n * y)(1.0),
        lambda n: fg.grad(lambda y: y * n)(1.0),
        lambda n: fg.grad(lambda y: fg.sum([y, n]))(1.0),
    ],
    ids=[
        "add",
        "radd",
        "mul",
        "sub",
        "rdiv",
        "pow",
        "rpow",
        "neg",
        "abs",
        "exp",
        "maximum",
        "sum",
        "dot",
        "in a later grad (left)",
        "in a later grad (right)",
        "in a later grad (sum)",
    ],
)
def test_a_node_used_after_its_transform_returned_raises_escaped_node_error(use: Any) -> None:
    node = _escaped_node()
    with pytest.raises(fg.EscapedNodeError, match=r"used after grad returned.*has_aux"):
        use(node)


def test_a_node_escaping_an_inner_grad_into_the_outer_one_raises() -> None:
    saved = []

    def outer(x: Any) -> Any:
        fg.grad(lambda y: saved.append(y * x) or y)(1.0)
        return x * saved[0]

    with pytest.raises(fg.EscapedNodeError, match="level 2"):
        fg.grad(outer)(2.0)


def test_nodes_returned_by_trace_cannot_be_computed_with() -> None:
    out = fg.trace(lambda x: x * 2.0)(1.0)
    with pytest.raises(fg.EscapedNodeError, match="trace"):
        out + 1.0


def test_a_node_of_a_closed_trace_passed_as_an_input_raises() -> None:
    node = _escaped_node()
    with pytest.raises(fg.EscapedNodeError):
        fg.grad(lambda x: x * 2.0)(node)


def test_returning_a_node_of_a_closed_trace_raises_instead_of_giving_a_zero_gradient() -> None:
    node = _escaped_node()
    with pytest.raises(fg.EscapedNodeError):
        fg.value_and_grad(lambda x: node)(1.0)
    # the nodes fg.trace returns are closed too: d/dx (y * x) at y = 1 is 1, not 0
    with pytest.raises(fg.EscapedNodeError):
        fg.grad(lambda x: fg.trace(lambda y: y * x)(1.0))(2.0)


def test_returning_a_node_of_a_closed_trace_as_aux_raises() -> None:
    node = _escaped_node()
    with pytest.raises(fg.EscapedNodeError):
        fg.grad(lambda x: (x * x, {"kept": node}), has_aux=True)(1.0)


def test_escaped_node_error_is_a_value_error_and_float_still_works() -> None:
    assert issubclass(fg.EscapedNodeError, ValueError)
    node = _escaped_node()
    assert float(node) == 2.0  # the suggested way out works


# Primitives with broken rules ------------------------------------------------------------------


def test_a_vjp_returning_too_many_cotangents_raises_a_clear_error() -> None:
    bad = fg.Primitive("bad", impl=lambda x: x, vjp=lambda g, out, x: (g, g))
    with pytest.raises(TypeError, match=r"vjp rule of primitive 'bad' returned a tuple of 2.*1 input"):
        fg.grad(bad)(1.0)


def test_a_vjp_returning_too_few_cotangents_raises_a_clear_error() -> None:
    bad = fg.Primitive("bad2", impl=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y,))
    with pytest.raises(TypeError, match=r"'bad2' returned a tuple of 1.*2 input.*one cotangent"):
        fg.grad(lambda x: bad(x, 3.0))(1.0)


@pytest.mark.parametrize("returned", [lambda g: g, lambda g: [g]], ids=["bare value", "list"])
def test_a_vjp_not_returning_a_tuple_raises_a_clear_error(returned: Any) -> None:
    bad = fg.Primitive("bad3", impl=lambda x: x, vjp=lambda g, out, x: returned(g))
    with pytest.raises(TypeError, match=r"'bad3'.*return a tuple"):
        fg.grad(bad)(1.0)


def test_a_primitive_without_a_vjp_cannot_be_differentiated() -> None:
    plain = fg.Primitive("plain", impl=lambda x: 2.0 * x)
    assert plain(1.5) == 3.0
    with pytest.raises(TypeError, match=r"'plain' has no vjp rule"):
        fg.grad(plain)(1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "", "impl": abs}, "name must be a non-empty string"),
        ({"name": 3, "impl": abs}, "name must be a non-empty string"),
        ({"name": "p", "impl": 3}, "impl must be callable"),
        ({"name": "p", "impl": abs, "vjp": "no"}, "vjp must be callable"),
        ({"name": "p", "impl": abs, "jvp": 1.0}, "jvp must be callable"),
    ],
)
def test_primitive_declaration_is_checked(kwargs: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        fg.Primitive(**kwargs)


# Misuse across the other transforms -------------------------------------------------------------
# Each message names the cause and the fix.

import fgrad.io as fgio  # noqa: E402
from fgrad import optim  # noqa: E402
from fgrad.nn import MLP  # noqa: E402


def test_jvp_needs_tuples_of_arguments() -> None:
    expected = r"tuples of the function's arguments, e\.g\. jvp\(f, \(x,\), \(dx,\)\)"
    with pytest.raises(TypeError, match=expected):
        fg.jvp(lambda x: x, 1.0, 1.0)


def test_jvp_tangents_of_another_shape_name_the_path() -> None:
    expected = r"tangents must have the structure of primals; they differ at \[0\]"
    with pytest.raises(ValueError, match=expected):
        fg.jvp(lambda p: p[0], ([1.0, 2.0],), ([1.0],))


def test_vjp_cotangent_of_another_shape_is_refused() -> None:
    _, f_vjp = fg.vjp(lambda x: {"a": x, "b": x}, 1.0)
    with pytest.raises(ValueError, match="cotangent must have the structure of the output"):
        f_vjp({"a": 1.0})


def test_hessian_of_a_non_scalar_function() -> None:
    with pytest.raises(TypeError, match="grad needs a scalar output, got a list of 2"):
        fg.hessian(lambda x: [x, x])(1.0)


def test_jit_static_argnums_out_of_range_and_unhashable() -> None:
    with pytest.raises(ValueError, match="static_argnums names argument 3 but the call has 1"):
        fg.jit(lambda x: x, static_argnums=3)(1.0)
    with pytest.raises(TypeError, match="must be hashable .* pass lists as tuples"):
        fg.jit(lambda x, n: x, static_argnums=1)(1.0, [1])
    with pytest.raises(TypeError, match="static_argnums must be an int or a tuple of ints"):
        fg.jit(lambda x: x, static_argnums="0")


def test_jit_refuses_float_of_a_traced_value_and_says_why() -> None:
    with pytest.raises(fg.TraceGuardError, match="frozen into the compiled code.*static_argnums"):
        fg.jit(lambda x: x * float(x))(2.0)


def test_jit_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cache_size must be a positive int"):
        fg.jit(lambda x: x, cache_size=0)


def test_vmap_mismatched_batch_sizes() -> None:
    with pytest.raises(ValueError, match="same number of examples"):
        fg.vmap(lambda a, b: a + b)([1.0], [1.0, 2.0])


def test_custom_vjp_used_before_its_rules() -> None:
    @fg.custom_vjp
    def f(x: Any) -> Any:
        return x

    with pytest.raises(TypeError, match=r"call f\.defvjp\(fwd, bwd\) before using it"):
        fg.grad(f)(1.0)


def test_derivatives_of_a_pytree_argument() -> None:
    with pytest.raises(TypeError, match="use fg.hessian or nested fg.grad"):
        fg.derivatives(lambda p: p["a"], order=2)({"a": 1.0})


def test_optimiser_update_with_grads_of_another_shape() -> None:
    opt = optim.sgd(0.1)
    state = opt.init({"w": 1.0, "b": 0.0})
    expected = r"grads do not match .* at the root: dict with keys \['b', 'w'\] vs dict with keys \['w'\]"
    with pytest.raises(ValueError, match=expected + r".*fg\.grad\(loss\)"):
        opt.update({"w": 1.0}, state)


def test_mlp_applied_to_an_input_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="expected an input sequence of 2 numbers, got length 1"):
        MLP.init([2, 3, 1])([1.0])


def test_loading_a_file_that_is_not_fgrad_data(tmp_path: Any) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(fgio.LoadError, match="bad.json"):
        fg.load(path)


def test_saving_a_tree_with_an_unsupported_leaf_names_its_path(tmp_path: Any) -> None:
    with pytest.raises(TypeError, match=r"\['w'\]"):
        fg.save({"w": object()}, tmp_path / "p.json")


def test_formatting_a_node_shows_its_value_and_is_refused_under_jit() -> None:
    assert fg.grad(lambda x: (x, f"{x:.2f}"), has_aux=True)(1.5)[1] == "1.50"
    with pytest.raises(fg.TraceGuardError, match="format\\(\\) of a traced value"):
        fg.jit(lambda x: f"{x:.2f}")(1.0)


def test_a_string_output_is_not_described_by_its_length() -> None:
    with pytest.raises(TypeError, match="got a str;"):
        fg.grad(lambda x: "hi")(1.0)


# Edges found by attacking the engine (each failed with a raw error, or none) ---------


def test_numpy_arrays_are_refused_outside_vmaps_batches() -> None:
    np = pytest.importorskip("numpy")
    a = np.array([1.0, 2.0])
    for f in (
        lambda x: x * a,
        lambda x: a * x,
        lambda x: x + np.array(2.0),
        lambda x: fg.exp(a) * x,
        lambda x: fg.maximum(x, a),
        lambda x: fg.sum([x, a]),
        lambda x: fg.dot([x], [a]),
    ):
        with pytest.raises(TypeError, match="numpy array of shape .*fg.vmap") as info:
            fg.grad(f)(1.0)
        assert "gradient" not in str(info.value)
        with pytest.raises(TypeError, match="numpy array"):
            fg.jit(f)(1.0)
    with pytest.raises(TypeError, match="numpy array"):
        fg.exp(a)  # not under a transform either: fg ops take numbers
    assert fg.grad(lambda x: x * np.float64(2.0))(1.0) == 2.0  # numpy scalars are numbers


def test_a_user_jvp_rule_gets_zero_tangents_for_constant_inputs() -> None:
    seen: list[Any] = []

    def rule(dxs: Any, out: Any, x: Any, y: Any) -> Any:
        seen.append(dxs)
        return dxs[0] * y + x * dxs[1]  # the obvious rule: no None to test for

    times = fg.Primitive("times", impl=lambda x, y: x * y, vjp=lambda g, out, x, y: (g * y, g * x), jvp=rule)
    assert fg.jvp(lambda x: times(x, 3.0), (2.0,), (1.0,)) == (6.0, 3.0)
    assert fg.jvp(lambda y: times(2.0, y), (3.0,), (1.0,)) == (6.0, 2.0)
    assert fg.jacfwd(lambda x: times(x, x))(3.0) == 6.0
    assert (1.0, 0.0) in seen and (0.0, 1.0) in seen


@pytest.mark.parametrize("bad", ["text", None, [1.0], 1j])
def test_a_primitive_whose_impl_returns_no_number_says_so(bad: Any) -> None:
    p = fg.Primitive("bad", impl=lambda x: bad, vjp=lambda g, out, x: (g,))
    for call in (
        lambda: p(1.0),
        lambda: fg.grad(p)(1.0),
        lambda: fg.grad(lambda x: p(x * 2.0))(1.0),
        lambda: fg.grad(fg.grad(p))(1.0),
        lambda: fg.jit(p)(1.0),
    ):
        with pytest.raises(TypeError, match=r"primitive 'bad': its impl returned a \w+ .*not a number"):
            call()


def test_a_primitive_needs_a_callable_impl() -> None:
    with pytest.raises(TypeError, match="impl must be callable"):
        fg.Primitive("p", impl=3.0)


def test_wrong_arguments_to_fgrad_ops_name_the_op_and_the_argument() -> None:
    cases = [
        (lambda: fg.maximum(1.0), r"maximum: takes \(x, y\), got 1 argument"),
        (lambda: fg.minimum(1.0, 2.0, 3.0), r"minimum: takes \(x, y\), got 3 argument"),
        (lambda: fg.exp("a"), r"exp: argument 0 is a str \('a'\), not a number"),
        (lambda: fg.sum(3.0), r"sum: xs must be an iterable of numbers .*got a float \(3.0\); for one"),
        (lambda: fg.sum([[1.0], [2.0]]), r"sum: xs\[0\] is a list \(\[1.0\]\), not a number"),
        (lambda: fg.grad(lambda x: fg.sum([[x], [x]]))(1.0), r"sum: xs\[0\] is a list"),
        (lambda: fg.mean("ab"), r"mean: xs must be an iterable of numbers"),
        (lambda: fg.dot(["a"], [1.0]), r"dot: ws\[0\] is a str \('a'\), not a number"),
        (lambda: fg.dot([1.0], [None]), r"dot: xs\[0\] is a NoneType"),
        (lambda: fg.dot([1.0], [2.0], bias="b"), r"dot: bias is a str"),
        (lambda: fg.round(1.5, 1.0), r"round: decimals must be an int"),
    ]
    for call, message in cases:
        with pytest.raises(TypeError, match=message):
            call()


@pytest.mark.parametrize(
    "transform",
    [
        fg.grad,
        fg.value_and_grad,
        fg.jacobian,
        fg.jacfwd,
        fg.jacrev,
        fg.hessian,
        fg.trace,
        fg.vmap,
        lambda f: fg.jvp(f, (1.0,), (1.0,)),
        lambda f: fg.vjp(f, 1.0),
        lambda f: fg.linearize(f, 1.0),
    ],
)
def test_a_non_callable_is_refused_at_once(transform: Any) -> None:
    with pytest.raises(TypeError, match="must be a function"):
        transform(3.0)


def test_ints_too_large_for_a_float_are_refused_clearly() -> None:
    huge = 10**400
    for call, where in [
        (lambda: fg.grad(lambda x: x)(huge), "grad: the input at argument 0"),
        (lambda: fg.grad(lambda p: p["w"])({"w": huge}), r"grad: the input at argument 0\['w'\]"),
        (lambda: fg.grad(lambda x: x * huge)(1.0), "mul: argument 1"),
        (lambda: fg.grad(lambda x: huge - x)(1.0), "sub: argument 0"),
        (lambda: fg.grad(lambda x: fg.exp(x) + huge)(1.0), "add: argument 1"),
        (lambda: fg.grad(lambda x: fg.maximum(x, huge) * 2.0)(1.0), "mul: argument 0"),
    ]:
        with pytest.raises(ValueError, match=where + " is an int too large for a float .*pass a float"):
            call()
    # comparisons with huge ints are exact in Python, and so are guards
    assert fg.grad(lambda x: x * 2.0 if x < huge else x)(1.0) == 2.0
    step = fg.jit(lambda x: x * 2.0 if x < huge else x)
    assert step(1.0) == step(3.0) / 3.0 == 2.0 and step.cache_info().traces == 1


def test_vmap_says_what_a_mapped_argument_must_be() -> None:
    from pyrsistent import pmap as _pmap

    for bad in ({"a": 1.0}, _pmap({"a": 1.0}), {1.0, 2.0}, 3.0, "ab"):
        with pytest.raises(TypeError, match=r"vmap: argument 0 is mapped .*a list of dicts.*None in in_axes"):
            fg.vmap(lambda x: x)(bad)

    class Lying:
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> float:
            raise IndexError("no")

    with pytest.raises(TypeError, match=r"vmap: argument 0 has length 3 but its example 0 cannot be read"):
        fg.vmap(lambda x: x)(Lying())
    with pytest.raises(TypeError, match="argument 1 has length 3 but its example 0"):
        fg.jit(lambda w: fg.sum(fg.vmap(lambda w, x: w * x, in_axes=(None, 0))(w, Lying())))(1.0)


def test_numpy_scalars_combine_with_traced_values_and_numpy_functions_name_the_fg_op() -> None:
    np = pytest.importorskip("numpy")
    cases = [
        (lambda x: np.float64(2.0) * x, 2.0),
        (lambda x: x * np.float64(2.0), 2.0),
        (lambda x: np.float32(2.0) * x, 2.0),
        (lambda x: np.int64(3) - x, -1.0),
        (lambda x: np.float64(1.0) / x, -1.0 / 1.5**2),
        (lambda x: x ** np.float64(2.0), 3.0),
        (lambda x: x * 2.0 if np.float64(1.0) < x else x, 2.0),
        (lambda x: abs(np.float64(-1.0) * x), 1.0),
    ]
    for f, want in cases:
        assert fg.grad(f)(1.5) == pytest.approx(want, rel=1e-15)
        assert fg.jit(fg.grad(f))(1.5) == fg.grad(f)(1.5)
    for f, name in [(np.exp, "exp"), (np.sin, "sin"), (lambda x: np.maximum(x, 1.0), "maximum")]:
        with pytest.raises(TypeError, match=rf"numpy\.{name} .*of a traced value.*use fg\.{name}"):
            fg.grad(f)(1.5)
    with pytest.raises(TypeError, match=r"numpy\.multiply: an argument is a numpy array of shape \(2,\)"):
        fg.grad(lambda x: np.array([1.0, 2.0]) * x)(1.5)


def test_a_leaf_whose_repr_raises_still_gets_the_message_about_leaves() -> None:
    class Opaque:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(TypeError, match=r"input at argument 0\[0\] is a Opaque \(\.\.\.\), not a real"):
        fg.grad(lambda p: p[1])([Opaque(), 1.0])


def test_what_a_users_rules_return_is_checked() -> None:
    np = pytest.importorskip("numpy")
    tuple_tangent = fg.Primitive(
        "twice", impl=lambda x: 2 * x, vjp=lambda g, o, x: (2 * g,), jvp=lambda d, o, x: (2 * d[0],)
    )
    array_impl = fg.Primitive("pair", impl=lambda x: np.array([x, x]), vjp=lambda g, o, x: (g,))
    array_cotangent = fg.Primitive("arrvjp", impl=lambda x: 2 * x, vjp=lambda g, o, x: (np.array([g, g]),))
    str_cotangent = fg.Primitive("strvjp", impl=lambda x: 2 * x, vjp=lambda g, o, x: ("g",))
    with pytest.raises(TypeError, match=r"jvp rule of primitive 'twice' returned a tuple .*output tangent"):
        fg.jvp(tuple_tangent, (1.0,), (1.0,))
    with pytest.raises(TypeError, match=r"jvp rule of primitive 'twice'"):
        fg.jacfwd(lambda x: tuple_tangent(x) + x)(1.0)
    assert fg.grad(tuple_tangent)(1.0) == 2.0  # its vjp rule is right
    for call in (lambda: array_impl(1.0), lambda: fg.grad(lambda x: array_impl(x) * 3.0)(1.0)):
        with pytest.raises(TypeError, match=r"primitive 'pair': its impl returned a ndarray"):
            call()
    for p, shown in ((array_cotangent, "a ndarray"), (str_cotangent, "a str")):
        with pytest.raises(TypeError, match=rf"vjp rule of primitive '{p.name}' returned {shown} .*input 0"):
            fg.grad(p)(1.0)


def test_bind_takes_a_primitive() -> None:
    with pytest.raises(TypeError, match="bind: prim must be a fgrad Primitive, got a function"):
        fg.bind(lambda x: x, 1.0)
    assert fg.bind(fg.exp, 0.0) == 1.0
