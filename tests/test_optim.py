"""Tests for fgrad.optim: hand-computed steps, schedules, pytrees, errors."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap, pvector

from fgrad.compilers.jit import jit
from fgrad.engine.tree import tree_flatten, tree_leaves, tree_unflatten
from fgrad.optim import (
    AdamState,
    GradientTransformation,
    MomentumState,
    SgdState,
    adam,
    apply_updates,
    momentum,
    sgd,
)

approx = pytest.approx


def run(opt: GradientTransformation, params: Any, grads_seq: list[Any]) -> list[Any]:
    """The updates of successive steps with the given grads."""
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        updates, state = opt.update(grads, state)
        out.append(updates)
    return out


# ------------------------------------------------------- hand-computed steps


def test_sgd_steps_are_minus_learning_rate_times_grads() -> None:
    params = {"a": 1.0, "b": -2.0}
    u1, u2 = run(sgd(0.1), params, [{"a": 0.5, "b": -1.0}, {"a": 2.0, "b": 4.0}])
    assert dict(u1) == approx({"a": -0.05, "b": 0.1})
    assert dict(u2) == approx({"a": -0.2, "b": -0.4})
    assert dict(apply_updates(params, u1)) == approx({"a": 0.95, "b": -1.9})


def test_momentum_steps_follow_the_heavy_ball_trace() -> None:
    # trace1 = g1 = (1, -2); trace2 = g2 + 0.9 * trace1 = (3.9, -0.8);
    # trace3 = 0 + 0.9 * trace2 = (3.51, -0.72); updates = -0.1 * trace.
    grads = [{"a": 1.0, "b": -2.0}, {"a": 3.0, "b": 1.0}, {"a": 0.0, "b": 0.0}]
    opt = momentum(0.1, beta=0.9)
    state = opt.init({"a": 0.0, "b": 0.0})
    expected_updates = [(-0.1, 0.2), (-0.39, 0.08), (-0.351, 0.072)]
    expected_traces = [(1.0, -2.0), (3.9, -0.8), (3.51, -0.72)]
    for g, (ua, ub), (ta, tb) in zip(grads, expected_updates, expected_traces, strict=True):
        updates, state = opt.update(g, state)
        assert (updates["a"], updates["b"]) == approx((ua, ub))
        assert (state.trace["a"], state.trace["b"]) == approx((ta, tb))
    assert state.count == 3


def test_adam_steps_match_optax_bias_corrected_formula() -> None:
    opt = adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    state = opt.init({"a": 5.0, "b": 5.0})
    assert isinstance(state, AdamState) and state.count == 0

    # Step 1: mu = 0.1 g, nu = 0.001 g^2, so mu_hat = g and nu_hat = g^2.
    updates, state = opt.update({"a": 1.0, "b": -2.0}, state)
    assert (state.mu["a"], state.mu["b"]) == approx((0.1, -0.2))
    assert (state.nu["a"], state.nu["b"]) == approx((0.001, 0.004))
    assert updates["a"] == approx(-0.01 * 1.0 / (1.0 + 1e-8), rel=1e-12)
    assert updates["b"] == approx(-0.01 * -2.0 / (2.0 + 1e-8), rel=1e-12)

    # Step 2: mu_a = 0.09 + 0.3 = 0.39, nu_a = 0.000999 + 0.009 = 0.009999,
    # mu_b = -0.18 + 0.1 = -0.08, nu_b = 0.003996 + 0.001 = 0.004996,
    # bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
    updates, state = opt.update({"a": 3.0, "b": 1.0}, state)
    assert state.count == 2
    assert (state.mu["a"], state.mu["b"]) == approx((0.39, -0.08))
    assert (state.nu["a"], state.nu["b"]) == approx((0.009999, 0.004996))
    assert updates["a"] == approx(-0.01 * (0.39 / 0.19) / (math.sqrt(0.009999 / 0.001999) + 1e-8))
    assert updates["b"] == approx(-0.01 * (-0.08 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8))
    assert updates["a"] == approx(-0.0091777, rel=1e-4)  # the same, as a number


@given(st.floats(-1e6, 1e6).filter(lambda g: abs(g) > 1e-3))
def test_adam_first_step_is_about_minus_learning_rate_times_sign(g: float) -> None:
    updates, _ = adam(0.5).update([g], adam(0.5).init([0.0]))
    # Exactly -lr * g / (|g| + eps): within eps / |g| <= 1e-5 of -lr * sign(g).
    assert updates[0] == approx(-0.5 * g / (abs(g) + 1e-8), rel=1e-12)
    assert updates[0] == approx(-0.5 * math.copysign(1.0, g), rel=1e-8 / abs(g) + 1e-12)


# ----------------------------------------------------------------- schedules


def test_schedule_is_called_with_step_counting_from_zero() -> None:
    steps: list[int] = []

    def schedule(step: int) -> float:
        steps.append(step)
        return [1.0, 0.5, 0.25][step]

    updates = run(sgd(schedule), [0.0], [[1.0], [1.0], [1.0]])
    assert [u[0] for u in updates] == [-1.0, -0.5, -0.25]
    assert steps == [0, 1, 2]


@pytest.mark.parametrize("make", [momentum, adam])
def test_schedules_work_for_every_optimiser(make: Any) -> None:
    seen: list[int] = []

    def schedule(step: int) -> float:
        seen.append(step)
        return 0.1 if step == 0 else 0.0

    opt = make(schedule)
    u1, u2 = run(opt, {"w": 0.0}, [{"w": 1.0}, {"w": 1.0}])
    assert u1["w"] == approx(-0.1, rel=1e-6)
    assert u2["w"] == 0.0
    assert seen == [0, 1]


def test_schedule_may_return_an_int() -> None:
    (u,) = run(sgd(lambda step: 2), {"w": 0.0}, [{"w": 1.5}])
    assert u["w"] == -3.0


# ------------------------------------------------------- pytrees, immutability


finite = st.floats(-1e6, 1e6, allow_nan=False)
flat_trees = st.one_of(
    st.dictionaries(st.text(max_size=3), finite, max_size=6),
    st.lists(finite, max_size=6),
    st.dictionaries(st.text(max_size=2), st.lists(finite, max_size=3), max_size=3),
)


@given(flat_trees, st.data())
def test_apply_updates_returns_a_new_tree_and_leaves_inputs_unchanged(params: Any, data: Any) -> None:
    leaves, td = tree_flatten(params)
    u_leaves = data.draw(st.lists(finite, min_size=len(leaves), max_size=len(leaves)))
    updates = tree_unflatten(td, u_leaves)
    params_before, updates_before = copy.deepcopy(params), copy.deepcopy(updates)

    new = apply_updates(params, updates)

    assert params == params_before and updates == updates_before
    assert new is not params
    assert tree_leaves(new) == [p + u for p, u in zip(leaves, u_leaves, strict=True)]
    assert isinstance(new, PMap if isinstance(params, dict) else PVector)


@given(flat_trees)
def test_sgd_update_is_minus_learning_rate_times_grads_for_any_tree(grads: Any) -> None:
    opt = sgd(0.25)
    state = opt.init(grads)
    updates, new_state = opt.update(grads, state)
    assert tree_leaves(updates) == [-0.25 * g for g in tree_leaves(grads)]
    assert state.count == 0 and new_state.count == 1


@dataclass(frozen=True)
class Linear:
    w: Any
    b: float


CONTAINERS = [
    ({"w": 1.0, "b": 2.0}, PMap),
    (pmap({"w": 1.0, "b": 2.0}), PMap),
    ([1.0, 2.0], PVector),
    (pvector([1.0, 2.0]), PVector),
    ((1.0, 2.0), tuple),
    (Linear(pvector([1.0]), 2.0), Linear),
    ({"layer": [Linear((1.0,), 2.0)]}, PMap),
]


@pytest.mark.parametrize("make", [sgd, momentum, adam])
@pytest.mark.parametrize(("params", "kind"), CONTAINERS)
def test_optimisers_work_on_any_pytree(make: Any, params: Any, kind: type) -> None:
    opt = make(0.1)
    grads = tree_unflatten(tree_flatten(params)[1], [1.0] * len(tree_leaves(params)))
    state = opt.init(params)
    state_before = copy.deepcopy(state)
    updates, new_state = opt.update(grads, state, params)
    new_params = apply_updates(params, updates)

    assert isinstance(updates, kind) and isinstance(new_params, kind)
    assert state == state_before and new_state is not state
    assert tree_leaves(updates) == approx([-0.1] * len(tree_leaves(params)), rel=1e-6)
    assert tree_leaves(new_params) == approx([p - 0.1 for p in tree_leaves(params)], rel=1e-6)


def test_grads_may_be_persistent_where_params_are_plain() -> None:
    params = {"w": [1.0, 2.0]}
    opt = momentum(0.5)
    updates, _ = opt.update(pmap({"w": pvector([2.0, 4.0])}), opt.init(params))
    assert apply_updates(params, updates) == pmap({"w": pvector([0.0, 0.0])})


def test_states_are_the_documented_records() -> None:
    params = {"w": 1.0}
    assert isinstance(sgd(0.1).init(params), SgdState)
    assert isinstance(momentum(0.1).init(params), MomentumState)
    assert momentum(0.1).init(params).trace == pmap({"w": 0.0})
    init, update = adam(0.1)  # a GradientTransformation unpacks
    assert init(params) == AdamState(0, pmap({"w": 0.0}), pmap({"w": 0.0}))


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("opt", "steps"),
    [(sgd(0.1), 200), (momentum(0.02, beta=0.9), 400), (adam(lambda s: 0.5 * 0.99**s), 1000)],
)
def test_minimising_a_parabola_converges(opt: GradientTransformation, steps: int) -> None:
    params = {"x": 0.0}
    state = opt.init(params)
    for _ in range(steps):
        grads = {"x": 2.0 * (params["x"] - 3.0)}
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
    assert params["x"] == approx(3.0, abs=1e-3)


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize("make", [sgd, momentum, adam])
def test_grads_of_another_structure_name_the_path(make: Any) -> None:
    opt = make(0.1)
    state = opt.init({"w": [1.0, 2.0], "b": 0.0})
    with pytest.raises(ValueError, match=r"grads do not match.*\['w'\].*length 2 vs .*length 1"):
        opt.update({"w": [1.0], "b": 0.0}, state)


@pytest.mark.parametrize("make", [sgd, momentum, adam])
def test_params_of_another_structure_are_rejected(make: Any) -> None:
    opt = make(0.1)
    state = opt.init({"w": 1.0})
    with pytest.raises(ValueError, match=r"params do not match"):
        opt.update({"w": 1.0}, state, {"v": 1.0})


def test_apply_updates_mismatch_names_the_path() -> None:
    with pytest.raises(ValueError, match=r"apply_updates: .*\['b'\]\[1\]"):
        apply_updates({"b": (1.0, 2.0)}, {"b": (1.0, [2.0])})


@pytest.mark.parametrize("bad", ["fast", None, [0.1]])
def test_schedule_returning_a_non_number_names_step_and_value(bad: Any) -> None:
    opt = sgd(lambda step: 0.1 if step < 2 else bad)
    state = opt.init([0.0])
    for _ in range(2):
        _, state = opt.update([1.0], state)
    with pytest.raises(TypeError, match=re.escape(f"schedule returned {bad!r}") + ".*at step 2"):
        opt.update([1.0], state)


@pytest.mark.parametrize("make", [sgd, momentum, adam])
@pytest.mark.parametrize("lr", ["0.1", None, [0.1], True])
def test_learning_rate_must_be_a_number_or_a_schedule(make: Any, lr: Any) -> None:
    with pytest.raises(TypeError, match="learning_rate must be a float or a schedule"):
        make(lr)


def test_learning_rate_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        sgd(float("nan"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: momentum(0.1, beta=-0.1),
        lambda: momentum(0.1, beta=1.0),
        lambda: adam(0.1, b1=1.0),
        lambda: adam(0.1, b2=-0.5),
        lambda: adam(0.1, b1=float("nan")),
        lambda: adam(0.1, eps=0.0),
        lambda: adam(0.1, eps=-1e-8),
    ],
)
def test_invalid_hyperparameters_are_rejected(call: Any) -> None:
    with pytest.raises(ValueError, match=r"must be (in \[0, 1\)|positive)"):
        call()


def test_non_number_hyperparameters_are_type_errors() -> None:
    with pytest.raises(TypeError, match="b1 must be a float"):
        adam(0.1, b1="0.9")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="eps must be"):
        adam(0.1, eps=None)  # type: ignore[arg-type]


def test_state_of_another_optimiser_is_rejected() -> None:
    with pytest.raises(TypeError, match="expected a SgdState.*got AdamState"):
        sgd(0.1).update({"w": 1.0}, adam(0.1).init({"w": 1.0}))


def test_non_number_leaves_name_the_path() -> None:
    opt = sgd(0.1)
    with pytest.raises(TypeError, match=r"sgd: cannot combine the leaves at \['b'\] \(str\)"):
        opt.update({"a": 1.0, "b": "x"}, opt.init({"a": 0.0, "b": 0.0}))
    with pytest.raises(TypeError, match=r"apply_updates: .*\[1\] \(str, float\)"):
        apply_updates([1.0, "x"], [1.0, 1.0])


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_every_optimiser_runs_under_jit_bit_for_bit(name: str) -> None:
    # Regression: adam took math.sqrt of its (traced) second moment.
    opt = {"sgd": sgd(0.1), "momentum": momentum(0.1), "adam": adam(0.1)}[name]
    params = {"w": 0.5, "b": [-1.0, 2.0]}
    grads = {"w": 0.25, "b": [1e-3, -4.0]}

    def step(params: Any, state: Any) -> Any:
        updates, state = opt.update(grads, state, params)
        return apply_updates(params, updates), state

    jitted = jit(step)
    a = b = params
    sa = sb = opt.init(params)
    for _ in range(3):
        a, sa = step(a, sa)
        b, sb = jitted(b, sb)
        assert tree_leaves((a, sa)) == tree_leaves((b, sb))
