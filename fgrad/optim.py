"""Optimisers as pairs of pure functions, in the style of optax.

An optimiser is a :class:`GradientTransformation` ``(init, update)``:

    state = opt.init(params)
    updates, state = opt.update(grads, state)
    params = apply_updates(params, updates)

States are frozen records holding persistent trees and the step count; an
update returns a new state and never touches the old one. Params may be any
pytree (dict, PMap, list, PVector, tuples, frozen dataclasses); updates and
state trees come back persistent (dict gives PMap, list gives PVector).

A learning rate is a number or a schedule ``step -> float``, where ``step``
counts updates from 0 (the first update uses ``schedule(0)``).

This module imports nothing of fgrad but :mod:`fgrad.engine.tree`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from fgrad.engine.tree import (
    TreeDef,
    static_field,
    structure_mismatch,
    tree_flatten,
    tree_paths,
    unflatten_persistent,
)
from fgrad.primitives.elementary import sqrt

__all__ = [
    "GradientTransformation",
    "Schedule",
    "LearningRate",
    "SgdState",
    "MomentumState",
    "AdamState",
    "sgd",
    "momentum",
    "adam",
    "apply_updates",
]

Schedule = Callable[[int], float]
LearningRate = float | Schedule


class InitFn(Protocol):
    def __call__(self, params: Any) -> Any: ...


class UpdateFn(Protocol):
    def __call__(self, grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]: ...


class GradientTransformation(NamedTuple):
    """An optimiser: ``init(params) -> state`` and
    ``update(grads, state, params=None) -> (updates, state)``."""

    init: InitFn
    update: UpdateFn


@dataclass(frozen=True)
class SgdState:
    """State of :func:`sgd`: the step count and the structure of the params."""

    count: int
    # Kept so that grads of the wrong shape are caught at update time, naming
    # the path, rather than as a confusing failure in apply_updates.
    structure: TreeDef = static_field(repr=False)


@dataclass(frozen=True)
class MomentumState:
    """State of :func:`momentum`: the step count and the velocity ``trace``."""

    count: int
    trace: Any


@dataclass(frozen=True)
class AdamState:
    """State of :func:`adam`: the step count and the first and second moments."""

    count: int
    mu: Any
    nu: Any


# ---------------------------------------------------------------- validation


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_learning_rate(name: str, learning_rate: Any) -> LearningRate:
    if callable(learning_rate):
        return learning_rate  # type: ignore[no-any-return]
    if not _is_real(learning_rate):
        raise TypeError(
            f"{name}: learning_rate must be a float or a schedule step -> float, got "
            f"{learning_rate!r} (a {type(learning_rate).__name__}); pass e.g. 0.01 or "
            f"lambda step: 0.01 * 0.99 ** step"
        )
    if not math.isfinite(learning_rate):
        raise ValueError(f"{name}: learning_rate must be finite, got {learning_rate!r}")
    return float(learning_rate)


def _check_beta(name: str, arg: str, value: Any, typical: float) -> float:
    if not _is_real(value):
        raise TypeError(f"{name}: {arg} must be a float in [0, 1), got {value!r} (a {type(value).__name__})")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{name}: {arg} must be in [0, 1), got {value!r}; it is a decay rate of a "
            f"running average (typically {typical})"
        )
    return float(value)


def _rate_at(name: str, learning_rate: LearningRate, count: int) -> float:
    """The learning rate for update number ``count`` (counting from 0)."""
    if not callable(learning_rate):
        return learning_rate
    value: Any = learning_rate(count)
    if getattr(type(value), "__tree_leaf__", False):
        return value  # type: ignore[no-any-return]  # a traced scalar (under jit, say)
    if not _is_real(value):
        raise TypeError(
            f"{name}: the learning-rate schedule returned {value!r} (a {type(value).__name__}) "
            f"at step {count}; a schedule must return a float, e.g. lambda step: 0.1 / (1 + step)"
        )
    return float(value)


def _check_state(name: str, state: Any, cls: type) -> None:
    if not isinstance(state, cls):
        raise TypeError(
            f"{name}.update: expected a {cls.__name__} (made by {name}'s init), got "
            f"{type(state).__name__}; pass the state returned by this optimiser"
        )


def _grad_leaves(name: str, grads: Any, params: Any, structure: TreeDef) -> list[Any]:
    """The leaves of ``grads``, after checking grads (and params) against ``structure``."""
    leaves, td = tree_flatten(grads)
    where = structure_mismatch(structure, td)
    if where is not None:
        raise ValueError(
            f"{name}.update: grads do not match the structure of the params given to init, "
            f"{where} (params vs grads). Pass gradients of those params, e.g. "
            f"fg.grad(loss)(params), or call init again for params of a new shape."
        )
    if params is not None:
        where = structure_mismatch(structure, tree_flatten(params)[1])
        if where is not None:
            raise ValueError(
                f"{name}.update: params do not match the structure of the params given to "
                f"init, {where} (init params vs params). Pass the current params, or call "
                f"init again for params of a new shape."
            )
    return leaves


def _leafwise(
    name: str, f: Callable[..., Any], columns: Sequence[list[Any]], structure: TreeDef
) -> list[Any]:
    """``[f(*xs) for xs in zip(*columns, strict=True)]``, naming the leaf's path if ``f`` fails."""
    try:
        return [f(*xs) for xs in zip(*columns, strict=True)]
    except TypeError as e:
        # Find the culprit only on failure, so that the happy path stays a list
        # comprehension and leaves may be any number-like type (floats or nodes).
        paths = tree_paths(structure)
        for path, xs in zip(paths, zip(*columns, strict=True), strict=True):
            try:
                f(*xs)
            except TypeError:
                kinds = ", ".join(type(x).__name__ for x in xs)
                raise TypeError(
                    f"{name}: cannot combine the leaves at {path or 'the root'} ({kinds}): {e}. "
                    f"Leaves of params and grads must be numbers."
                ) from e
        raise


# ---------------------------------------------------------------- optimisers


def sgd(learning_rate: LearningRate) -> GradientTransformation:
    """Stochastic gradient descent: ``updates = -learning_rate * grads``.

    Args:
        learning_rate: a float, or a schedule ``step -> float`` (step from 0).

    Returns:
        A :class:`GradientTransformation` with an :class:`SgdState`.

    >>> opt = sgd(0.1)
    >>> state = opt.init({"w": 1.0})
    >>> updates, state = opt.update({"w": 2.0}, state)
    >>> updates
    pmap({'w': -0.2})
    >>> apply_updates({"w": 1.0}, updates), state.count
    (pmap({'w': 0.8}), 1)
    """
    lr = _check_learning_rate("sgd", learning_rate)

    def init(params: Any) -> SgdState:
        return SgdState(0, tree_flatten(params)[1])

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, SgdState]:
        _check_state("sgd", state, SgdState)
        g = _grad_leaves("sgd", grads, params, state.structure)
        step = -_rate_at("sgd", lr, state.count)
        updates = _leafwise("sgd", lambda gi: step * gi, [g], state.structure)
        return unflatten_persistent(state.structure, updates), SgdState(state.count + 1, state.structure)

    return GradientTransformation(init, update)


def momentum(learning_rate: LearningRate, beta: float = 0.9) -> GradientTransformation:
    """Heavy-ball momentum, as optax's ``sgd(learning_rate, momentum=beta)``.

    ``trace = grads + beta * trace``; ``updates = -learning_rate * trace``.

    Args:
        learning_rate: a float, or a schedule ``step -> float`` (step from 0).
        beta: the decay of the velocity, in [0, 1).

    Returns:
        A :class:`GradientTransformation` with a :class:`MomentumState`.

    >>> opt = momentum(0.5, beta=0.5)
    >>> state = opt.init([0.0])
    >>> updates, state = opt.update([1.0], state)
    >>> updates, state = opt.update([1.0], state)   # trace = 1 + 0.5 * 1
    >>> updates
    pvector([-0.75])
    """
    lr = _check_learning_rate("momentum", learning_rate)
    beta = _check_beta("momentum", "beta", beta, 0.9)

    def init(params: Any) -> MomentumState:
        leaves, td = tree_flatten(params)
        return MomentumState(0, unflatten_persistent(td, [0.0] * len(leaves)))

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, MomentumState]:
        _check_state("momentum", state, MomentumState)
        trace, td = tree_flatten(state.trace)
        g = _grad_leaves("momentum", grads, params, td)
        step = -_rate_at("momentum", lr, state.count)
        trace = _leafwise("momentum", lambda gi, ti: gi + beta * ti, [g, trace], td)
        updates = [step * t for t in trace]
        new_state = MomentumState(state.count + 1, unflatten_persistent(td, trace))
        return unflatten_persistent(td, updates), new_state

    return GradientTransformation(init, update)


def adam(
    learning_rate: LearningRate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """Adam with bias correction, as optax's ``adam``.

    With ``t = count + 1``: ``mu = b1 * mu + (1 - b1) * g``,
    ``nu = b2 * nu + (1 - b2) * g**2``, ``mu_hat = mu / (1 - b1**t)``,
    ``nu_hat = nu / (1 - b2**t)`` and
    ``updates = -learning_rate * mu_hat / (sqrt(nu_hat) + eps)``.

    Args:
        learning_rate: a float, or a schedule ``step -> float`` (step from 0).
        b1: decay of the first moment (the mean of the gradients), in [0, 1).
        b2: decay of the second moment (the mean of their squares), in [0, 1).
        eps: added to the denominator to keep steps finite; positive.

    Returns:
        A :class:`GradientTransformation` with an :class:`AdamState`.

    >>> opt = adam(0.1)
    >>> state = opt.init({"w": 5.0})
    >>> updates, state = opt.update({"w": 3.0}, state)   # the first step is ~ -lr * sign(g)
    >>> round(updates["w"], 6)
    -0.1
    """
    lr = _check_learning_rate("adam", learning_rate)
    b1 = _check_beta("adam", "b1", b1, 0.9)
    b2 = _check_beta("adam", "b2", b2, 0.999)
    if not _is_real(eps):
        raise TypeError(f"adam: eps must be a positive float, got {eps!r} (a {type(eps).__name__})")
    if not (eps > 0.0 and math.isfinite(eps)):
        raise ValueError(f"adam: eps must be positive and finite (it keeps steps finite), got {eps!r}")
    eps = float(eps)

    def init(params: Any) -> AdamState:
        leaves, td = tree_flatten(params)
        zeros = unflatten_persistent(td, [0.0] * len(leaves))
        return AdamState(0, zeros, zeros)

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, AdamState]:
        _check_state("adam", state, AdamState)
        mu, td = tree_flatten(state.mu)
        nu = tree_flatten(state.nu)[0]
        g = _grad_leaves("adam", grads, params, td)
        step = -_rate_at("adam", lr, state.count)
        t = state.count + 1
        c1 = 1.0 - b1**t
        c2 = 1.0 - b2**t
        mu = _leafwise("adam", lambda gi, m: b1 * m + (1.0 - b1) * gi, [g, mu], td)
        nu = [b2 * v + (1.0 - b2) * (gi * gi) for gi, v in zip(g, nu, strict=True)]
        updates = [step * (m / c1) / (_sqrt(v / c2) + eps) for m, v in zip(mu, nu, strict=True)]
        new_state = AdamState(t, unflatten_persistent(td, mu), unflatten_persistent(td, nu))
        return unflatten_persistent(td, updates), new_state

    return GradientTransformation(init, update)


def _sqrt(x: Any) -> Any:
    """math.sqrt on a float, fg.sqrt on a traced value (adam under jit)."""
    return math.sqrt(x) if type(x) is float else sqrt(x)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, as a new tree.

    Args:
        params: a pytree of numbers.
        updates: a tree of the same structure (dict ~ PMap, list ~ PVector).

    Returns:
        A new tree of the params' structure, made persistent; neither input
        is modified.

    >>> apply_updates([1.0, 2.0], [0.5, -0.5])
    pvector([1.5, 1.5])
    """
    p, td = tree_flatten(params)
    u, u_td = tree_flatten(updates)
    where = structure_mismatch(td, u_td)
    if where is not None:
        raise ValueError(
            f"apply_updates: updates do not match the structure of params, {where} "
            f"(params vs updates). Pass the updates that opt.update returned for these params."
        )
    return unflatten_persistent(td, _leafwise("apply_updates", lambda a, b: a + b, [p, u], td))
