"""Custom derivative rules for Python functions of scalars, as in JAX.

``custom_vjp`` and ``custom_jvp`` turn a function into a primitive of its
own: its value is computed by the function on floats, its derivative by the
rules you give. The rules are written with fgrad ops, so they are themselves
differentiated under nested transforms, like every primitive's rules.

Both protocols follow JAX:

    f.defvjp(fwd, bwd)   fwd(*xs) -> (out, residuals)
                         bwd(residuals, g) -> tuple of cotangents, one per input
    f.defjvp(rule)       rule(primals, tangents) -> (out, out_tangent)

A custom function returns one scalar. Its other mode is derived from the
rule you gave (for one scalar output a Jacobian is a row): forward mode of a
``custom_vjp`` function uses ``bwd(residuals, 1.0)``, reverse mode of a
``custom_jvp`` function evaluates the rule on each basis tangent.
"""

from __future__ import annotations

import functools
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from fgrad.engine.core import Expr, Primitive, bind

__all__ = ["custom_vjp", "custom_jvp"]


def _name(fun: Callable[..., Any]) -> str:
    return getattr(fun, "__name__", "custom")


def _scalar_result(name: str, out: Any) -> Any:
    if type(out) is Expr or (isinstance(out, numbers.Real) and not isinstance(out, bool)):
        return out
    raise TypeError(
        f"custom function {name!r} returned a {type(out).__name__}; a custom_vjp or "
        "custom_jvp function must return one scalar"
    )


class _Custom(ABC):
    """Shared behaviour: a Primitive whose impl is the wrapped function."""

    def __init__(self, fun: Callable[..., Any]) -> None:
        if not callable(fun):
            raise TypeError(f"{type(self).__name__} decorates a function, got {fun!r}")
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.prim = Primitive(_name(fun), impl=self._impl, vjp=self._vjp, jvp=self._jvp, symbolic_zeros=True)
        self.prim.trusted = True  # its rules check what the user's return (_check_cotangents ...)

    def _impl(self, *xs: Any) -> Any:
        return _scalar_result(self.prim.name, self.fun(*xs))

    @abstractmethod
    def _ready(self) -> None:
        """Raise if the rules have not been given yet."""

    def __call__(self, *args: Any) -> Any:
        self._ready()
        if not args:
            raise TypeError(f"custom function {self.prim.name!r} needs at least one argument")
        return bind(self.prim, *args)

    @abstractmethod
    def _vjp(self, g: Any, out: Any, *xs: Any) -> tuple[Any, ...]:
        """The primitive's reverse rule."""

    @abstractmethod
    def _jvp(self, dxs: tuple[Any, ...], out: Any, *xs: Any) -> Any:
        """The primitive's forward rule."""


def _check_cotangents(name: str, cts: Any, n: int) -> tuple[Any, ...]:
    if not isinstance(cts, (tuple, list)) or len(cts) != n:
        got = f"a {type(cts).__name__}" + (f" of {len(cts)}" if isinstance(cts, (tuple, list)) else "")
        raise TypeError(
            f"the bwd rule of custom_vjp function {name!r} returned {got}, but the function "
            f"has {n} input(s): return a tuple with one cotangent per input, e.g. (g * dx,)"
        )
    for c in cts:
        if c is not None and type(c) is not Expr and not isinstance(c, numbers.Real):
            raise TypeError(
                f"the bwd rule of custom_vjp function {name!r} returned a cotangent of type "
                f"{type(c).__name__}; cotangents are scalars (or None for zero)"
            )
    return tuple(cts)


class custom_vjp(_Custom):
    """Give a scalar function a reverse-mode rule of your own.

    >>> import fgrad as fg
    >>> @custom_vjp
    ... def log1pexp(x):
    ...     return fg.log(1.0 + fg.exp(x))
    >>> def fwd(x):
    ...     return log1pexp(x), (x,)
    >>> def bwd(res, g):
    ...     (x,) = res
    ...     return (g * fg.sigmoid(x),)
    >>> log1pexp.defvjp(fwd, bwd)
    >>> fg.grad(log1pexp)(1000.0)   # the plain rule would give nan (inf / inf)
    1.0
    """

    def __init__(self, fun: Callable[..., Any]) -> None:
        super().__init__(fun)
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        """Set the rules: ``fwd(*xs) -> (out, residuals)`` and
        ``bwd(residuals, g) -> tuple of cotangents``."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError(f"defvjp of {self.prim.name!r}: fwd and bwd must be functions")
        self.fwd, self.bwd = fwd, bwd

    def _ready(self) -> None:
        if self.fwd is None:
            raise TypeError(
                f"custom_vjp function {self.prim.name!r} has no rules yet: call "
                f"{self.prim.name}.defvjp(fwd, bwd) before using it"
            )

    def _cotangents(self, g: Any, xs: tuple[Any, ...]) -> tuple[Any, ...]:
        assert self.fwd is not None and self.bwd is not None
        # Residuals are recomputed here rather than stored in the node (nodes
        # hold no closures): fwd runs on this level's values, so under nested
        # transforms it is recorded, and bwd's ops are differentiated in turn.
        pair = self.fwd(*xs)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"the fwd rule of custom_vjp function {self.prim.name!r} must return "
                f"(out, residuals), got {type(pair).__name__}"
            )
        return _check_cotangents(self.prim.name, self.bwd(pair[1], g), len(xs))

    def _vjp(self, g: Any, out: Any, *xs: Any) -> tuple[Any, ...]:
        return self._cotangents(g, xs)

    def _jvp(self, dxs: tuple[Any, ...], out: Any, *xs: Any) -> Any:
        total: Any = None
        for dx, c in zip(dxs, self._cotangents(1.0, xs)):
            if dx is not None and c is not None:
                total = dx * c if total is None else total + dx * c
        return total


class custom_jvp(_Custom):
    """Give a scalar function a forward-mode rule of your own.

    >>> import fgrad as fg
    >>> @custom_jvp
    ... def safe_sqrt(x):
    ...     return fg.sqrt(x)
    >>> @safe_sqrt.defjvp
    ... def rule(primals, tangents):
    ...     (x,), (dx,) = primals, tangents
    ...     out = safe_sqrt(x)
    ...     return out, (0.0 if x == 0 else dx / (2.0 * out))
    >>> fg.grad(safe_sqrt)(0.0), fg.grad(safe_sqrt)(4.0)
    (0.0, 0.25)
    """

    def __init__(self, fun: Callable[..., Any]) -> None:
        super().__init__(fun)
        self.rule: Callable[..., Any] | None = None

    def defjvp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Set ``rule(primals, tangents) -> (out, out_tangent)``; returns it,
        so it can be used as a decorator."""
        if not callable(rule):
            raise TypeError(f"defjvp of {self.prim.name!r}: the rule must be a function")
        self.rule = rule
        return rule

    def _ready(self) -> None:
        if self.rule is None:
            raise TypeError(
                f"custom_jvp function {self.prim.name!r} has no rule yet: call "
                f"{self.prim.name}.defjvp(rule) before using it"
            )

    def _tangent(self, xs: tuple[Any, ...], dxs: tuple[Any, ...]) -> Any:
        assert self.rule is not None
        pair = self.rule(xs, dxs)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"the jvp rule of custom_jvp function {self.prim.name!r} must return "
                f"(out, out_tangent), got {type(pair).__name__}"
            )
        return _scalar_result(self.prim.name, pair[1])

    def _jvp(self, dxs: tuple[Any, ...], out: Any, *xs: Any) -> Any:
        return self._tangent(xs, tuple(0.0 if d is None else d for d in dxs))

    def _vjp(self, g: Any, out: Any, *xs: Any) -> tuple[Any, ...]:
        n = len(xs)
        basis = [tuple(1.0 if j == i else 0.0 for j in range(n)) for i in range(n)]
        return tuple(g * self._tangent(xs, e) for e in basis)
