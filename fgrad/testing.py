"""Checking derivatives against numerical ones, and hypothesis strategies.

``numerical_grad`` takes central differences; ``check_grads`` compares fgrad's
derivatives with them, to any order, naming the leaf and the error when they
disagree. The strategies (``floats_in``, ``op_inputs``, ``expressions``) need
hypothesis, which the ``test`` extra installs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fgrad.engine.tree import tree_flatten, tree_paths, tree_unflatten, unflatten_persistent
from fgrad.transforms.autodiff import grad, jvp
from fgrad.transforms.graph import RuleError

__all__ = [
    "numerical_grad",
    "check_grads",
    "floats_in",
    "op_inputs",
    "expressions",
    "RandomFunction",
    "OP_DOMAINS",
]


def _step(x: float, eps: float) -> float:
    return eps * max(1.0, abs(x))


def numerical_grad(f: Callable[..., Any], params: Any, eps: float = 1e-6) -> Any:
    """Central-difference gradient of a scalar function of one pytree.

    Args:
        f: a function of ``params`` returning a number.
        params: a pytree of real numbers.
        eps: relative step; each leaf moves by ``eps * max(1, |x|)``.

    Returns:
        The gradient estimate, in the structure :func:`fgrad.grad` returns.

    >>> round(numerical_grad(lambda p: p["a"] * p["a"], {"a": 3.0})["a"], 6)
    6.0
    """
    leaves, td = tree_flatten(params)
    xs = [float(x) for x in leaves]
    out = []
    for i, x in enumerate(xs):
        h = _step(x, eps)
        up = list(xs)
        up[i] = x + h
        down = list(xs)
        down[i] = x - h
        f_up = float(f(tree_unflatten(td, up)))
        f_down = float(f(tree_unflatten(td, down)))
        out.append((f_up - f_down) / ((x + h) - (x - h)))
    return unflatten_persistent(td, out)


def _direction(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-1.0, 1.0) for _ in range(n)]


def _directional(f: Callable[..., Any], args: tuple[Any, ...], mode: str, seed: int) -> Callable[..., Any]:
    """A scalar function whose first derivatives are ``f``'s next-order ones:
    ``x -> <grad f(x), v>`` (rev) or ``x -> jvp(f, x, v)`` (fwd), for a
    fixed random direction ``v``."""
    leaves, td = tree_flatten(args)
    v = _direction(len(leaves), seed)
    if mode == "rev":
        g = grad(f, argnums=tuple(range(len(args))))

        def along(*xs: Any) -> Any:
            total: Any = 0.0
            for leaf, vi in zip(tree_flatten(g(*xs))[0], v):
                total = total + leaf * vi
            return total

        return along
    tangents = tree_unflatten(td, v)

    def along_fwd(*xs: Any) -> Any:
        return jvp(f, xs, tangents)[1]

    return along_fwd


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int = 1,
    modes: Sequence[str] = ("fwd", "rev"),
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Check ``f``'s derivatives against independent oracles, to any order.

    ``"fwd"``: each input's forward-mode derivative (``jvp`` along that leaf)
    against central differences. ``"rev"``: the gradient against central
    differences leaf by leaf, and against forward mode by the inner-product
    identity ``<grad f, v> == jvp(f, v)`` for a random direction ``v``.
    Order ``k`` repeats the checks on ``x -> <grad f(x), v>`` (or on
    ``x -> jvp(f, x, v)``), whose derivatives are f's order-``k`` ones.

    Args:
        f: a scalar function of the positional ``args`` (pytrees of reals).
        args: the point to check at.
        order: highest derivative order to check.
        modes: any of ``"fwd"`` and ``"rev"`` (both by default, as JAX's check_grads).
        eps: relative finite-difference step (default 1e-6).
        atol, rtol: allowed error ``atol + rtol * max(|analytic|, |oracle|)``
            (defaults 1e-5 and 1e-4).

    Raises:
        AssertionError: naming the mode, order, leaf path and the error.

    >>> import fgrad as fg
    >>> check_grads(lambda x, y: fg.sin(x) * y, (0.3, 2.0), order=2, modes=("fwd", "rev"))
    """
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"check_grads: order must be a positive int, got {order!r}")
    modes = tuple(modes)
    if not modes or any(m not in ("fwd", "rev") for m in modes):
        raise ValueError(f"check_grads: modes must be a non-empty subset of ('fwd', 'rev'), got {modes!r}")
    tol = _Tolerance(
        1e-6 if eps is None else eps, 1e-5 if atol is None else atol, 1e-4 if rtol is None else rtol
    )
    args = tuple(args)
    for mode in modes:
        fn = f
        for k in range(1, order + 1):
            (_check_rev if mode == "rev" else _check_fwd)(fn, args, k, tol)
            if k < order:
                fn = _directional(fn, args, mode, seed=k)


@dataclass(frozen=True)
class _Tolerance:
    eps: float
    atol: float
    rtol: float

    def check(self, mode: str, k: int, where: str, got: Any, want: Any, oracle: str) -> None:
        a, n = float(got), float(want)
        if math.isnan(a) and math.isnan(n):
            return
        err = abs(a - n)
        tol = self.atol + self.rtol * max(abs(a), abs(n))
        if not err <= tol:
            raise AssertionError(
                f"check_grads: mode {mode}, order {k}: at {where} the derivative is {a!r} but "
                f"{oracle} gives {n!r} (error {err:.3g} > tolerance {tol:.3g})"
            )


def _numeric_partials(f: Callable[..., Any], args: tuple[Any, ...], eps: float) -> list[Any]:
    leaves, td = tree_flatten(args)
    return tree_flatten(numerical_grad(lambda a: f(*a), tree_unflatten(td, leaves), eps))[0]


def _check_rev(f: Callable[..., Any], args: tuple[Any, ...], k: int, tol: _Tolerance) -> None:
    analytic = tree_flatten(grad(f, argnums=tuple(range(len(args))))(*args))[0]
    leaves, td = tree_flatten(args)
    paths = tree_paths(td)
    for path, a, n in zip(paths, analytic, _numeric_partials(f, args, tol.eps)):
        tol.check("rev", k, f"argument {_arg_path(path)}", a, n, "central differences")
    v = _direction(len(leaves), seed=1000 + k)
    try:
        along = jvp(f, args, tree_unflatten(td, v))[1]
    except RuleError:
        return  # a primitive with no jvp rule: central differences were the oracle
    inner: Any = 0.0
    for a, vi in zip(analytic, v):
        inner = inner + a * vi
    tol.check("rev", k, "a random direction (inner-product identity)", inner, along, "forward mode")


def _check_fwd(f: Callable[..., Any], args: tuple[Any, ...], k: int, tol: _Tolerance) -> None:
    leaves, td = tree_flatten(args)
    paths = tree_paths(td)
    numeric = _numeric_partials(f, args, tol.eps)
    for j, (path, n) in enumerate(zip(paths, numeric)):
        basis = tree_unflatten(td, [1.0 if i == j else 0.0 for i in range(len(leaves))])
        tol.check("fwd", k, f"argument {_arg_path(path)}", jvp(f, args, basis)[1], n, "central differences")


def _arg_path(path: str) -> str:
    close = path.index("]")
    return path[1:close] + path[close + 1 :]


# Hypothesis strategies ------------------------------------------------------


def _hypothesis() -> Any:
    try:
        from hypothesis import strategies
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fgrad.testing strategies need hypothesis: pip install 'fgrad[test]'") from e
    return strategies


def floats_in(lo: float, hi: float) -> Any:
    """A strategy for finite floats in ``[lo, hi]``."""
    st = _hypothesis()
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


# Where each primitive is smooth, as (lo, hi, kinks to keep away from).
OP_DOMAINS: dict[str, tuple[float, float, tuple[float, ...]]] = {
    "exp": (-5.0, 5.0, ()),
    "log": (0.05, 20.0, ()),
    "tanh": (-4.0, 4.0, ()),
    "relu": (-3.0, 3.0, (0.0,)),
    "sigmoid": (-6.0, 6.0, ()),
    "sqrt": (0.05, 20.0, ()),
    "sin": (-6.0, 6.0, ()),
    "cos": (-6.0, 6.0, ()),
    "abs": (-3.0, 3.0, (0.0,)),
    # the rounding family: derivative 0 between its jumps
    "floor": (-3.0, 3.0, (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)),
    "ceil": (-3.0, 3.0, (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)),
    "trunc": (-3.0, 3.0, (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)),
    "round": (-3.0, 3.0, (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)),
}


def op_inputs(name: str, margin: float = 1e-3) -> Any:
    """A strategy for inputs where primitive ``name`` is smooth.

    Points within ``margin`` of a kink (``relu`` and ``abs`` at 0) are left
    out, since no finite difference can agree with a one-sided derivative.
    """
    lo, hi, kinks = OP_DOMAINS[name]
    return floats_in(lo, hi).filter(lambda x: all(abs(x - k) > margin for k in kinks))


# Random expression programs: instructions over a growing list of values, so
# later steps reuse earlier results (shared subexpressions). Every op here is
# smooth and finite on all reals, so central differences are a fair oracle.
_UNARY: dict[str, Callable[[Any], Any]] = {}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {}


def _register_ops() -> None:
    from fgrad.primitives import ops

    _UNARY.update(
        {
            "tanh": ops.tanh,
            "sin": ops.sin,
            "cos": ops.cos,
            "sigmoid": ops.sigmoid,
            "neg": lambda a: -a,
            "square": lambda a: a**2,
            "exp_tanh": lambda a: ops.exp(ops.tanh(a)),
            "log_1p_sq": lambda a: ops.log(1.0 + a * a),
            "sqrt_1p_sq": lambda a: ops.sqrt(1.0 + a * a),
            "scale": lambda a: 0.5 * a - 0.25,
            # Python control flow on a traced value: two different programs
            # for cosh(a), so every derivative agrees across the switch while
            # jit must guard on the branch and keep both paths.
            "branch": lambda a: (
                (ops.exp(a) + ops.exp(-a)) * 0.5 if a > 0 else ops.exp(-a) * 0.5 + ops.exp(a) * 0.5
            ),
        }
    )
    _BINARY.update(
        {
            "add": lambda a, b: a + b,
            "sub": lambda a, b: a - b,
            "mul": lambda a, b: a * b,
            "div_1p_sq": lambda a, b: a / (1.0 + b * b),
            "sum3": lambda a, b: ops.sum([a, b, a * b]),
            "dot": lambda a, b: ops.dot([a, b], [b, 0.5], bias=0.1),
            "pow_1p_sq": lambda a, b: (1.0 + a * a) ** ops.tanh(b),
        }
    )


@dataclass(frozen=True)
class RandomFunction:
    """A random expression program over ``n_inputs`` scalars.

    Call it with floats or nodes; ``repr`` shows the program.
    """

    n_inputs: int
    program: tuple[tuple[str, tuple[int, ...]], ...]

    def __call__(self, *xs: Any) -> Any:
        if not _UNARY:
            _register_ops()
        if len(xs) != self.n_inputs:
            raise TypeError(f"this random function takes {self.n_inputs} inputs, got {len(xs)}")
        values = list(xs)
        for op, idx in self.program:
            fn: Any = _UNARY.get(op) or _BINARY[op]
            values.append(fn(*(values[i] for i in idx)))
        return values[-1]

    def __repr__(self) -> str:
        names = [f"x{i}" for i in range(self.n_inputs)]
        lines: list[str] = []
        for op, idx in self.program:
            names.append(f"t{len(lines)}")
            lines.append(f"{names[-1]} = {op}({', '.join(names[i] for i in idx)})")
        return f"RandomFunction({'; '.join(lines)})"


def expressions(n_inputs: int = 2, max_steps: int = 8) -> Any:
    """A strategy for :class:`RandomFunction` programs of 1..max_steps ops."""
    st = _hypothesis()
    if not _UNARY:
        _register_ops()
    unary, binary = sorted(_UNARY), sorted(_BINARY)

    @st.composite  # type: ignore[untyped-decorator]
    def programs(draw: Any) -> RandomFunction:
        steps = draw(st.integers(min_value=1, max_value=max_steps))
        program: list[tuple[str, tuple[int, ...]]] = []
        for k in range(steps):
            avail = n_inputs + k
            pick = st.integers(min_value=0, max_value=avail - 1)
            if draw(st.booleans()):
                program.append((draw(st.sampled_from(unary)), (draw(pick),)))
            else:
                program.append((draw(st.sampled_from(binary)), (draw(pick), draw(pick))))
        return RandomFunction(n_inputs, tuple(program))

    return programs()
