"""Expression nodes, primitives and ``bind``: the heart of the engine.

A transform opens a :class:`Trace` one level above the active ones and runs the
user's function on :class:`Expr` nodes of that trace. Applying a primitive
(:func:`bind`) to arguments of several levels takes the highest level, lowers
that level's nodes to their values (which may be nodes of lower levels), applies
the primitive to those values (recursively, so the outer traces record it too)
and wraps the result as a node of the top level. Each node holds its concrete
value, so Python control flow on nodes works, and its creation index, so the
tape (creation order) is a topological order for the reverse pass.

This module imports nothing of fgrad but its error messages and traces
(:mod:`fgrad.engine.trace`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from fgrad.engine import errors
from fgrad.engine.errors import EscapedNodeError, Unbatchable
from fgrad.engine.trace import Trace

__all__ = [
    "Expr",
    "Primitive",
    "bind",
    "EscapedNodeError",
    "Number",
    "Unbatchable",
]

Number = float | int


def _is_array(x: Any) -> bool:
    return type(x).__name__ == "ndarray" and type(x).__module__ == "numpy"


def _vectorized(prim: Primitive, values: Any, error: Exception) -> Any:
    """``prim``'s impl failed on ``values``: on a batch, use its numpy
    implementation (or give up batching); on numbers, the error stands."""
    if not any(map(_is_array, values)):
        raise errors.impl_failed(prim, values, error) from None
    if prim.vectorized is None:
        raise Unbatchable(f"primitive {prim.name!r} has no vectorized implementation")
    return prim.vectorized(*values)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Expr:
    """A node of an expression graph: an immutable value with its history.

    Attributes:
        value: the concrete value (a float, or a node of a lower trace when
            transforms are nested).
        prim: the primitive that made it, or None for an input (leaf).
        args: the primitive's arguments (nodes of any trace, or numbers).
        trace: the trace that recorded it.
        seq: its index in the trace's creation order.

    Nodes compare by value (``<``, ``==`` ... return plain bools) and are not
    hashable, like arrays. Internal maps key them by ``seq`` or ``id``.
    """

    __tree_leaf__: ClassVar[bool] = True  # a node is a leaf of pytrees
    # numpy hands ufuncs of nodes to the node (np.float64(2) * node is a
    # node, np.exp(node) a clear error): fgrad.engine.guards installs the method.

    value: Any
    prim: Primitive | None
    args: tuple[Any, ...]
    trace: Trace
    seq: int

    # Arithmetic operators (+ - * / ** unary - abs // % round ...) are
    # installed by fgrad.primitives.operators, bound to the primitives.

    # Comparisons, truth tests and float()/int()/format() look at the
    # concrete value and are guarded under jit: fgrad.engine.guards installs them.

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        op = self.prim.name if self.prim is not None else "input"
        v = self.value
        shown = f"{v:.6g}" if type(v) is float else f"<level {self.trace.level - 1} node>"
        return f"Expr({op}, value={shown}, trace={self.trace.name}#{self.trace.level}, seq={self.seq})"


# Nodes are built on the hot path; the frozen dataclass __init__ goes through
# object.__setattr__ once per field (~2x slower), so set the slots directly.
_new = object.__new__
_set_value: Callable[[Expr, Any], None] = Expr.__dict__["value"].__set__
_set_prim: Callable[[Expr, Any], None] = Expr.__dict__["prim"].__set__
_set_args: Callable[[Expr, Any], None] = Expr.__dict__["args"].__set__
_set_trace: Callable[[Expr, Any], None] = Expr.__dict__["trace"].__set__
_set_seq: Callable[[Expr, Any], None] = Expr.__dict__["seq"].__set__


def make_node(trace: Trace, value: Any, prim: Primitive | None, args: tuple[Any, ...]) -> Expr:
    """Append a new node to ``trace``'s tape and return it."""
    tape = trace.tape
    if tape is None:
        raise _escaped(trace)
    node = _new(Expr)
    _set_value(node, value)
    _set_prim(node, prim)
    _set_args(node, args)
    _set_trace(node, trace)
    _set_seq(node, len(tape))
    tape.append(node)
    return node


_escaped = errors.escaped
_mixed = errors.mixed


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real)


class Primitive:
    """An operation declared once with all of its rules.

    Args:
        name: shown in graphs, formulas and errors.
        impl: ``impl(*xs)`` evaluates on plain floats and returns a float.
        vjp: ``vjp(g, out, *xs)`` returns a tuple with one cotangent per input
            (None for zero), given the output cotangent ``g``, the output
            value ``out`` and the input values.
        jvp: ``jvp(dxs, out, *xs)`` returns the output tangent given one
            tangent per input in ``dxs`` (``0.0`` for an input that has
            none, such as a constant).
        products: the vjp may give a cotangent as a pair ``(a, b)`` meaning
            ``a * b``; the reverse pass multiplies late, fusing the pairs
            that reach one node into a single ``dot`` (``fg.dot`` does this).
        vectorized: the same function on numpy arrays, elementwise, for
            vmap's numpy backend (used where ``impl`` fails on arrays).
            Without it, a vmap under jit that meets the primitive loops
            over the examples instead.
        taylor: ``taylor(*series)`` maps the truncated Taylor series of the
            inputs (lists ``[c0, c1, ..., cn]`` of coefficients, ``ck`` the
            k-th derivative over k!, ``0.0`` for a zero) to the output's, for
            ``fg.derivatives``; the result's ``c0`` is replaced by the value,
            and a result of the wrong length or type raises a TypeError.
            Without it, Taylor mode derives the series exactly from the
            primitive's other rules (slower at high orders).
        symbolic_zeros: the jvp rule receives None (not ``0.0``) for inputs
            without a tangent, so that it can skip work; fgrad's own rules do.
        doc: its docstring for ``help(prim)``: what it computes, its derivative, its conventions.

    Write rules with fgrad's operations, not ``math``: under nested
    transforms their arguments are nodes, which is what makes derivatives of
    any order work (and divide with ``fg.div``, raise with ``fg.power``:
    Python's ``/`` and ``**`` raise on floats where fgrad gives inf or nan).

    >>> import math
    >>> softplus = Primitive(
    ...     "softplus",
    ...     impl=lambda x: math.log1p(math.exp(x)),
    ...     vjp=lambda g, out, x: (g * (1.0 - exp(-out)),),
    ...     jvp=lambda dxs, out, x: dxs[0] * (1.0 - exp(-out)),
    ... )
    >>> round(softplus(0.0), 6)
    0.693147
    """

    __slots__ = (
        "name",
        "impl",
        "vjp",
        "jvp",
        "products",
        "vectorized",
        "taylor",
        "symbolic_zeros",
        "trusted",
        "doc",
    )

    def __init__(
        self,
        name: str,
        impl: Callable[..., Any],
        vjp: Callable[..., Any] | None = None,
        jvp: Callable[..., Any] | None = None,
        *,
        products: bool = False,
        vectorized: Callable[..., Any] | None = None,
        taylor: Callable[..., Any] | None = None,
        symbolic_zeros: bool = False,
        doc: str | None = None,
    ) -> None:
        _check_declaration(
            name, impl, {"vjp": vjp, "jvp": jvp, "vectorized": vectorized, "taylor": taylor}, doc
        )
        self.name = name
        self.impl = impl
        self.vjp = vjp
        self.jvp = jvp
        self.products = products
        self.vectorized = vectorized
        self.taylor = taylor
        self.symbolic_zeros = bool(symbolic_zeros)
        self.doc = doc
        self.trusted = False  # fgrad's own (set where declared): their rules' outputs go unchecked

    def __call__(self, *args: Any) -> Any:
        if len(args) == 1:
            # Unary ops on a node of the outermost trace are most of a graph
            # after arithmetic: build the node here (see _binop).
            x = args[0]
            if type(x) is Expr:
                t = x.trace
                tape = t.tape
                if t.level == 1 and tape is not None:
                    node = _new(Expr)
                    try:
                        value = self.impl(x.value)
                    except (TypeError, ValueError, OverflowError) as e:
                        value = _vectorized(self, (x.value,), e)
                    if type(value) is not float:
                        _check_value(self, value, (x.value,))
                    if DEBUG_NANS and value != value:
                        nan_found(self, (x,), "")
                    _set_value(node, value)
                    _set_prim(node, self)
                    _set_args(node, args)
                    _set_trace(node, t)
                    _set_seq(node, len(tape))
                    tape.append(node)
                    return node
        return bind(self, *args)

    def __repr__(self) -> str:
        return f"Primitive({self.name!r})"

    def __init_subclass__(cls, **kwargs: Any) -> None:  # a subclass's instances show their doc= too
        super().__init_subclass__(**kwargs)
        cls.__doc__ = _Docstring(cls.__dict__.get("__doc__") or Primitive.__doc__)  # type: ignore[assignment]


def _check_declaration(name: Any, impl: Any, rules: dict[str, Any], doc: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"Primitive: name must be a non-empty string, got {name!r}")
    if not callable(impl):
        raise TypeError(f"Primitive {name!r}: impl must be callable, got {impl!r}")
    for label, rule in rules.items():
        if rule is not None and not callable(rule):
            raise TypeError(f"Primitive {name!r}: {label} must be callable, got {rule!r}")
    if doc is not None and not isinstance(doc, str):
        raise TypeError(f"Primitive {name!r}: doc must be a str or None, got {type(doc).__name__}")


class _Docstring:
    """``Primitive.__doc__``: the class's docstring, and on an instance its
    own ``doc`` (so that ``help(fg.tanh)`` shows tanh's, not the class's)."""

    def __init__(self, text: str | None) -> None:
        self.text = text

    def __get__(self, obj: Primitive | None, cls: type | None = None) -> str | None:
        return self.text if obj is None else (obj.doc or self.text)


Primitive.__doc__ = _Docstring(Primitive.__doc__)  # type: ignore[assignment]


def bind(prim: Primitive, *args: Any) -> Any:
    """Apply ``prim`` to floats or nodes of any traces (see module doc)."""
    top = None
    for a in args:
        if type(a) is Expr:
            t = a.trace
            if t is not top:
                if top is None or t.level > top.level:
                    top = t
                elif t.level == top.level:
                    raise _mixed(t, top)
        elif type(a) is not float and _is_array(a):
            raise errors.array_argument(prim.name, a)
    return _apply(prim, top, args)


def apply(prim: Primitive, *args: Any) -> Any:
    """Apply a primitive to numbers or traced values (``fg.bind``): what
    calling ``prim(*args)`` does, with its arguments checked first."""
    if not isinstance(prim, Primitive):
        raise TypeError(
            f"bind: prim must be a fgrad Primitive, got {errors.describe(prim)}; declare "
            "one with fg.Primitive(name, impl, vjp, jvp)"
        )
    return bind(prim, *args)


def _bind_values(prim: Primitive, values: list[Any]) -> Any:
    """:func:`bind` on values lowered from nodes: arrays among them are
    vmap's batches, not user data."""
    top = None
    for a in values:
        if type(a) is Expr:
            t = a.trace
            if t is not top and (top is None or t.level > top.level):
                top = t
    return _apply(prim, top, values)


def _apply(prim: Primitive, top: Trace | None, args: Any) -> Any:
    if top is None:
        try:
            value = prim.impl(*args)
        except (TypeError, ValueError, OverflowError) as e:
            value = _vectorized(prim, args, e)
        if type(value) is not float:
            _check_value(prim, value, args)
        if DEBUG_NANS and value != value:
            nan_found(prim, tuple(args), "")
        return value
    if not top.live:
        raise _escaped(top)
    if top.level == 1:
        # The outermost trace: every node argument is one of its own and all
        # values are plain numbers, so skip the recursion.
        values = [a.value if type(a) is Expr else a for a in args]
        try:
            value = prim.impl(*values)
        except (TypeError, ValueError, OverflowError) as e:
            value = _vectorized(prim, values, e)
        if type(value) is not float:
            _check_value(prim, value, values)
        if DEBUG_NANS and value != value:
            nan_found(prim, tuple(args), "")
        return make_node(top, value, prim, tuple(args))
    values = [a.value if type(a) is Expr and a.trace is top else a for a in args]
    return make_node(top, _bind_values(prim, values), prim, tuple(args))


def _check_value(prim: Primitive, value: Any, inputs: Any) -> None:
    """An impl's result must be a number (or a batch, from a batch: vmap's)."""
    if type(value) is int or (_is_number(value) and type(value) is not bool):
        return
    if _is_array(value) and (prim.trusted or any(map(_is_array, inputs))):  # (vmap's batch primitives)
        return
    raise errors.not_a_number(prim.name, value)


def _peel(x: Any) -> Any:
    while type(x) is Expr:
        x = x.value
    return x


# NaN debugging: the switch is read here on every operation; fgrad.debug holds
# the API and the report, installed as ``nan_found`` when fgrad is imported.

DEBUG_NANS = False


def _no_report(prim: Primitive, inputs: tuple[Any, ...], where: str) -> None:
    return None


nan_found: Callable[[Primitive, tuple[Any, ...], str], None] = _no_report
