"""Every primitive documents itself, and the conventions its doc states hold.

``help(fg.tanh)`` shows tanh's own doc (a Primitive's ``doc=``), not the text of
the Primitive class. Each doc says what the primitive computes, names its
derivative and gives an example, which doctest runs through its module's
``__test__``. The second half checks each stated value at a kink, pole or domain
edge that no other test pins down.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import pydoc
import re
from types import ModuleType
from typing import Any

import pytest

import fgrad as fg
import fgrad.primitives
from fgrad.engine.core import Primitive
from fgrad.primitives import ops
from fgrad.primitives.basic import neg
from fgrad.primitives.piecewise import share, sign, step
from fgrad.primitives.powers import pow_log
from fgrad.primitives.reductions import dot_p, sum_p
from fgrad.transforms import batching

inf = math.inf
nan = math.nan

GENERIC = Primitive.__doc__
assert GENERIC is not None and GENERIC.startswith("An operation declared once")

MODULES: list[ModuleType] = [
    importlib.import_module(f"fgrad.primitives.{m.name}")
    for m in pkgutil.iter_modules(fgrad.primitives.__path__)
]


def _primitives_in(namespace: dict[str, Any]) -> dict[int, tuple[str, Primitive]]:
    return {id(v): (k, v) for k, v in namespace.items() if isinstance(v, Primitive)}


PUBLIC = {k: getattr(fg, k) for k in fg.__all__ if isinstance(getattr(fg, k), Primitive)}
DECLARED: dict[int, tuple[str, Primitive]] = {}
for _module in MODULES:
    DECLARED.update(_primitives_in(vars(_module)))
ALL = {**_primitives_in(PUBLIC), **DECLARED}
IDS = [f"{name} ({p.name})" for name, p in ALL.values()]
BATCH = [p for _, p in _primitives_in(vars(batching)).values()]


def test_the_primitives_are_found() -> None:
    assert {"tanh", "relu", "abs", "div", "maximum", "sqrt"} <= set(PUBLIC)
    assert len(DECLARED) == len(ops.PRIMITIVES) == 31
    assert len(BATCH) == 7


@pytest.mark.parametrize("prim", [p for _, p in ALL.values()], ids=IDS)
def test_every_primitive_has_its_own_doc_naming_its_derivative(prim: Primitive) -> None:
    doc = prim.doc
    assert isinstance(doc, str) and doc.strip() and doc != GENERIC
    assert prim.__doc__ == doc
    assert re.search(r"\bDerivatives?\b", doc), f"{prim.name}'s doc does not name its derivative"
    assert ">>> " in doc, f"{prim.name}'s doc has no example"


@pytest.mark.parametrize("prim", [p for _, p in ALL.values()], ids=IDS)
def test_help_shows_the_primitives_own_text(prim: Primitive) -> None:
    shown = pydoc.render_doc(prim, renderer=pydoc.plaintext)
    assert prim.doc is not None
    for line in prim.doc.strip().splitlines():
        assert line.strip() in shown
    assert "An operation declared once" not in shown


def test_help_of_tanh_is_tanhs() -> None:
    shown = pydoc.render_doc(fg.tanh, renderer=pydoc.plaintext)
    assert "the hyperbolic tangent" in shown and "1 - tanh(x) ** 2" in shown


@pytest.mark.parametrize("prim", BATCH, ids=[p.name for p in BATCH])
def test_the_numpy_backends_primitives_have_their_own_short_docs(prim: Primitive) -> None:
    assert prim.doc and prim.doc != GENERIC and prim.__doc__ == prim.doc
    assert len(prim.doc.strip().splitlines()) <= 2
    assert f"``{prim.name}(" in prim.doc


def test_doctest_runs_every_primitives_examples() -> None:
    # doctest skips objects that are neither functions nor classes: each family
    # hands its primitives' docs to it in __test__.
    collected = [doc for m in MODULES for doc in getattr(m, "__test__", {}).values()]
    for name, prim in DECLARED.values():
        assert prim.doc in collected, f"{name}'s examples are in no module's __test__"


def test_every_declared_primitive_is_fgrads_own() -> None:
    catalogue = {id(p) for p in ops.PRIMITIVES.values()}
    for name, prim in DECLARED.values():
        assert id(prim) in catalogue, f"{name} is missing from ops.PRIMITIVES"
        assert prim.trusted and prim.symbolic_zeros, name


@pytest.mark.parametrize("name", ["sum", "dot", "mean", "power", "floor", "mod", "stop_gradient"])
def test_the_public_functions_document_their_derivative(name: str) -> None:
    f = getattr(fg, name)
    assert not isinstance(f, Primitive)
    assert f.__doc__ and re.search(r"derivative", f.__doc__, re.IGNORECASE) and ">>> " in f.__doc__


# The conventions the docs state -------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal floats, with nan equal to nan and the sign of a zero counted."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    if type(a) is not float:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def d(f: Any, *args: float, argnums: Any = 0) -> Any:
    return fg.grad(f, argnums=argnums)(*args)


BIG = 1e308 * 10.0  # inf, as a cotangent

CONVENTIONS = [
    # basic
    ("neg(0.0)", lambda: neg(0.0), -0.0),
    ("0 * inf in a derivative", lambda: d(lambda x: 0.0 * (x * inf), 1.0), nan),
    ("div's derivatives at (1, 0)", lambda: d(fg.div, 1.0, 0.0, argnums=(0, 1)), (inf, -inf)),
    ("div's derivatives at (0, 0)", lambda: d(fg.div, 0.0, 0.0, argnums=(0, 1)), (inf, nan)),
    ("nan / 0", lambda: fg.div(nan, 0.0), nan),
    ("stop_gradient(nan)", lambda: fg.stop_gradient(nan), nan),
    ("stop_gradient's tangent", lambda: fg.jvp(fg.stop_gradient, (1.0,), (1.0,)), (1.0, 0.0)),
    # elementary
    ("exp(709.78)", lambda: float(math.isfinite(fg.exp(709.78))), 1.0),
    ("exp(709.79)", lambda: fg.exp(709.79), inf),
    ("log(-0.0)", lambda: fg.log(-0.0), -inf),
    ("log' at -0.0", lambda: d(fg.log, -0.0), -inf),
    ("log(nan)", lambda: fg.log(nan), nan),
    ("sin(-inf)", lambda: fg.sin(-inf), nan),
    ("cos(-inf)", lambda: fg.cos(-inf), nan),
    ("cos' at 0", lambda: d(fg.cos, 0.0), -0.0),
    ("tanh(-inf)", lambda: fg.tanh(-inf), -1.0),
    ("tanh' at 19.1", lambda: d(fg.tanh, 19.1), 0.0),
    ("tanh' at -inf", lambda: d(fg.tanh, -inf), 0.0),
    ("tanh' at 19 is not yet 0", lambda: float(d(fg.tanh, 19.0) > 0), 1.0),
    ("tanh' at nan", lambda: d(fg.tanh, nan), nan),
    ("sqrt(-0.0)", lambda: fg.sqrt(-0.0), -0.0),
    ("sqrt' at -0.0", lambda: d(fg.sqrt, -0.0), -inf),
    ("sqrt' at inf", lambda: d(fg.sqrt, inf), 0.0),
    ("sigmoid(-inf)", lambda: fg.sigmoid(-inf), 0.0),
    ("sigmoid(inf)", lambda: fg.sigmoid(inf), 1.0),
    ("sigmoid' at -inf", lambda: d(fg.sigmoid, -inf), 0.0),
    ("sigmoid' at inf", lambda: d(fg.sigmoid, inf), 0.0),
    ("sigmoid(nan)", lambda: fg.sigmoid(nan), nan),
    # powers
    ("x ** 3 at 0: 0", lambda: d(lambda x: x**3, 0.0), 0.0),
    ("x ** 1.5 at 0: 0", lambda: d(lambda x: x**1.5, 0.0), 0.0),
    ("x ** -2 at 0: -inf", lambda: d(lambda x: x**-2, 0.0), -inf),
    ("x ** -0.5 at 0: -inf", lambda: d(lambda x: x**-0.5, 0.0), -inf),
    ("x ** 1 at 0: 1", lambda: d(lambda x: x**1, 0.0), 1.0),
    ("(-0.0) ** -2", lambda: fg.power(-0.0, -2.0), inf),
    ("d/dx x ** y at (0, 0)", lambda: d(lambda x, y: x**y, 0.0, 0.0), 0.0),
    ("d/dy x ** y at (-8, 3)", lambda: d(lambda x, y: x**y, -8.0, 3.0, argnums=1), nan),
    ("d/dx x ** y at (-8, 3)", lambda: d(lambda x, y: x**y, -8.0, 3.0), 192.0),
    ("2.0 ** y: d/dy", lambda: d(lambda y: 2.0**y, 0.0), math.log(2.0)),
    ("pow_log: c = 0 beats an inf power", lambda: pow_log(0.0, 0.0, -1.0, 0), 0.0),
    ("pow_log: c = 0 beats nan", lambda: pow_log(0.0, -8.0, 0.5, 0), 0.0),
    ("pow_log: k >= 1 at x = 0", lambda: pow_log(1.0, 0.0, -1.0, 2), 0.0),
    ("pow_log: k = 0 at x = 0", lambda: pow_log(1.0, 0.0, -1.0, 0), inf),
    ("pow_log: negative x, k >= 1", lambda: pow_log(1.0, -2.0, 2.0, 1), nan),
    # piecewise
    ("step(nan)", lambda: step(nan), 0.0),
    ("step(-0.0)", lambda: step(-0.0), 0.0),
    ("sign(-0.0)", lambda: sign(-0.0), 0.0),
    ("sign(nan)", lambda: sign(nan), nan),
    ("share(nan, 1)", lambda: share(nan, 1.0), 0.5),
    ("share(1, nan)", lambda: share(1.0, nan), 0.5),
    ("step'", lambda: d(step, 1.0), 0.0),
    ("sign'", lambda: d(sign, -1.0), 0.0),
    ("share'", lambda: d(share, 2.0, 1.0, argnums=(0, 1)), (0.0, 0.0)),
    ("abs(-0.0)", lambda: fg.abs(-0.0), 0.0),
    ("abs' at -0.0", lambda: d(fg.abs, -0.0), 0.0),
    ("abs' at nan", lambda: d(fg.abs, nan), nan),
    ("abs: inf cotangent at 0", lambda: d(lambda x: BIG * fg.abs(x), 0.0), nan),
    ("relu(-0.0)", lambda: fg.relu(-0.0), 0.0),
    ("relu(-inf)", lambda: fg.relu(-inf), 0.0),
    ("relu' at nan", lambda: d(fg.relu, nan), 0.0),
    ("relu: inf cotangent below 0", lambda: d(lambda x: BIG * fg.relu(x), -1.0), nan),
    ("relu: inf cotangent below 0, jit", lambda: fg.jit(fg.grad(lambda x: BIG * fg.relu(x)))(-1.0), nan),
    ("maximum(-0.0, 0.0)", lambda: fg.maximum(-0.0, 0.0), -0.0),
    ("maximum(0.0, -0.0)", lambda: fg.maximum(0.0, -0.0), 0.0),
    ("minimum(0.0, -0.0)", lambda: fg.minimum(0.0, -0.0), 0.0),
    ("minimum(-0.0, 0.0)", lambda: fg.minimum(-0.0, 0.0), -0.0),
    ("maximum' at a nan", lambda: d(fg.maximum, nan, 1.0, argnums=(0, 1)), (0.5, 0.5)),
    ("minimum' at a nan", lambda: d(fg.minimum, 1.0, nan, argnums=(0, 1)), (0.5, 0.5)),
    ("minimum(x, x)'", lambda: d(lambda x: fg.minimum(x, x), 2.0), 1.0),
    # rounding
    ("-1 // 0", lambda: fg.floor_divide(-1.0, 0.0), -inf),
    ("1 // -0.0", lambda: fg.floor_divide(1.0, -0.0), -inf),
    ("inf // 2", lambda: fg.floor_divide(inf, 2.0), nan),
    ("// at 0: derivatives", lambda: d(fg.floor_divide, 1.0, 0.0, argnums=(0, 1)), (0.0, 0.0)),
    ("inf % 2", lambda: fg.mod(inf, 2.0), nan),
    ("mod' at y = 0", lambda: d(fg.mod, 1.0, 0.0, argnums=(0, 1)), (1.0, -inf)),
    ("mod' at (-7.5, 2)", lambda: d(fg.mod, -7.5, 2.0, argnums=(0, 1)), (1.0, 4.0)),
    ("floor(-0.0)", lambda: fg.floor(-0.0), -0.0),
    ("trunc(-0.5)", lambda: fg.trunc(-0.5), -0.0),
    ("round(-0.5)", lambda: fg.round(-0.5), -0.0),
    ("round(inf, 2)", lambda: fg.round(inf, 2), inf),
    ("ceil(nan)", lambda: fg.ceil(nan), nan),
    ("floor(-inf)", lambda: fg.floor(-inf), -inf),
    ("floor' at a jump", lambda: d(fg.floor, 3.0), 0.0),
    ("ceil' at a jump", lambda: d(fg.ceil, -2.0), 0.0),
    ("trunc' at a jump", lambda: d(fg.trunc, 1.0), 0.0),
    ("round' at a jump", lambda: d(fg.round, 2.5), 0.0),
    ("round(x, 2)' at a jump", lambda: d(lambda x: fg.round(x, 2), 2.675), 0.0),
    # reductions
    ("sum of nothing", lambda: sum_p(), 0.0),
    ("sum of -0.0", lambda: sum_p(-0.0), -0.0),
    ("fg.sum of nothing", lambda: fg.sum([]), 0.0),
    ("dot of nothing", lambda: dot_p(), 0.0),
    ("dot of a bias alone", lambda: dot_p(1.5), 1.5),
    ("dot' in the bias", lambda: d(lambda b: fg.dot([2.0], [3.0], b), 1.0), 1.0),
    ("dot' in w and x", lambda: d(lambda w, x: fg.dot([w], [x]), 2.0, 3.0, argnums=(0, 1)), (3.0, 2.0)),
    (
        "mean' is 1 / n",
        lambda: d(lambda a, b: fg.mean([a, b, 1.0, 1.0]), 1.0, 2.0, argnums=(0, 1)),
        (0.25, 0.25),
    ),
]


@pytest.mark.parametrize("text, thunk, expected", CONVENTIONS, ids=[c[0] for c in CONVENTIONS])
def test_the_stated_conventions_hold(text: str, thunk: Any, expected: Any) -> None:
    got = thunk()
    assert same(got, expected), (text, got, expected)


@pytest.mark.parametrize(
    "thunk", [lambda: fg.exp(10**400), lambda: fg.power(10**400, 2), lambda: fg.power(2.0, 10**400)]
)
def test_an_int_too_large_for_a_float_is_refused(thunk: Any) -> None:
    with pytest.raises(ValueError, match="too large for a float"):
        thunk()


def test_pow_logs_derivatives_are_the_stated_formulas() -> None:
    c, x, y, k = 2.0, 3.0, 1.5, 1
    got = fg.grad(lambda c, x, y: pow_log(c, x, y, k), argnums=(0, 1, 2))(c, x, y)
    log = math.log(x)
    want = (
        x**y * log**k,
        c * y * x ** (y - 1) * log**k + c * k * x ** (y - 1) * log ** (k - 1),
        c * x**y * log ** (k + 1),
    )
    assert got == pytest.approx(want, rel=1e-14)
