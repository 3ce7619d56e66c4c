"""Python's operators on :class:`Expr` nodes, bound to fgrad's primitives.

``+ - * / // % ** divmod``, unary ``- + abs()``, and ``round()``,
``math.floor``/``ceil``/``trunc`` (through ``__round__``, ``__floor__`` ...)
on a node apply the primitives of ``fgrad.primitives.basic``, ``powers``,
``piecewise`` and ``rounding``, so plain Python arithmetic is traced.
Comparisons and conversions live in ``fgrad.engine.guards``. Importing this
module installs the methods (fgrad's ``__init__`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fgrad.engine import core, errors
from fgrad.engine.core import (
    Expr,
    Primitive,
    _is_array,
    _is_number,
    _new,
    _set_args,
    _set_prim,
    _set_seq,
    _set_trace,
    _set_value,
    _vectorized,
    bind,
)
from fgrad.primitives import rounding
from fgrad.primitives.basic import add, div, mul, neg, sub
from fgrad.primitives.piecewise import abs_
from fgrad.primitives.powers import pow_, pow_const
from fgrad.primitives.rounding import floordiv
from fgrad.primitives.rounding import mod_p as mod

__all__: list[str] = []


def _binop(prim: Primitive, reflected: bool) -> Callable[[Any, Any], Any]:
    """The method behind an arithmetic operator, e.g. ``Expr.__mul__``.

    The common case (a node and a number, or two nodes of one live trace,
    over float values) builds the node here, inline: this is the hottest
    path of eager tracing. Anything else (nesting, closed traces) goes
    through the general :func:`bind`.
    """
    impl = prim.impl

    def op(self: Expr, other: Any) -> Any:
        t = self.trace
        if type(other) is Expr:
            if other.trace is not t:
                return bind(prim, other, self) if reflected else bind(prim, self, other)
            vo = other.value
        elif type(other) is float or type(other) is int or _is_number(other):
            vo = other
        elif _is_array(other):
            raise errors.array_argument(prim.name, other)
        else:
            return NotImplemented
        vs = self.value
        tape = t.tape
        if type(vs) is Expr or type(vo) is Expr or tape is None:
            return bind(prim, other, self) if reflected else bind(prim, self, other)
        node = _new(Expr)
        try:
            if reflected:
                value = impl(vo, vs)
                _set_args(node, (other, self))
            else:
                value = impl(vs, vo)
                _set_args(node, (self, other))
        except (TypeError, ValueError, OverflowError) as e:
            value = _vectorized(prim, (vo, vs) if reflected else (vs, vo), e)
            _set_args(node, (other, self) if reflected else (self, other))
        if core.DEBUG_NANS and value != value:
            core.nan_found(prim, node.args, "")
        _set_value(node, value)
        _set_prim(node, prim)
        _set_trace(node, t)
        _set_seq(node, len(tape))
        tape.append(node)
        return node

    op.__name__ = f"__{'r' if reflected else ''}{prim.name}__"
    return op


def _divmod(self: Expr, other: Any) -> tuple[Any, Any]:
    return bind(floordiv, self, other), bind(mod, self, other)


def _rdivmod(self: Expr, other: Any) -> tuple[Any, Any]:
    return bind(floordiv, other, self), bind(mod, other, self)


def _pow(self: Expr, other: Any) -> Any:
    if type(other) is not Expr and _is_number(other):
        return bind(pow_const, self, other)  # x ** c: no log(x) in the rule
    return _pow_op(self, other)


def _rpow(self: Expr, other: Any) -> Any:
    return _rpow_op(self, other)


def _neg(self: Expr) -> Any:
    return bind(neg, self)


def _pos(self: Expr) -> Expr:
    return self


def _abs(self: Expr) -> Any:
    return bind(abs_, self)


_pow_op = _binop(pow_, False)
_rpow_op = _binop(pow_, True)

for _prim, _name in (
    (add, "add"),
    (sub, "sub"),
    (mul, "mul"),
    (div, "truediv"),
    (floordiv, "floordiv"),
    (mod, "mod"),
):
    setattr(Expr, f"__{_name}__", _binop(_prim, False))
    setattr(Expr, f"__r{_name}__", _binop(_prim, True))


def _round(self: Expr, ndigits: Any = None) -> Any:
    return rounding.round(self, 0 if ndigits is None else ndigits)


for _name, _method in (
    ("pow", _pow),
    ("rpow", _rpow),
    ("neg", _neg),
    ("pos", _pos),
    ("abs", _abs),
    ("divmod", _divmod),
    ("rdivmod", _rdivmod),
    ("floor", rounding.floor),
    ("ceil", rounding.ceil),
    ("trunc", rounding.trunc),
    ("round", _round),
):
    setattr(Expr, f"__{_name}__", _method)
