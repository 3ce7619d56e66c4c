"""Interrupts (Ctrl-C in a notebook) never leave fgrad's state behind.

A KeyboardInterrupt is raised at one bytecode of fgrad's code (a trace
function raises it at an ``opcode`` event), for every bytecode in turn;
afterwards no trace may be left on the active stack, the cyclic garbage
collector must be on, numpy's error settings untouched and vmap free to
batch, so that jit compiles and vmap uses numpy as before.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

import fgrad as fg
from fgrad.engine import core
from fgrad.engine import trace as traces
from tests.conftest import SLOW

vmap_module = importlib.import_module("fgrad.transforms.vmap")  # (fg.vmap is the function)

np = pytest.importorskip("numpy")

FGRAD = os.path.dirname(fg.__file__)
# Bytecodes of these functions are all interrupted in turn; elsewhere one in
# STRIDE (all of them with FGRAD_SLOW=1): an interrupt in a tree walk or a
# rule behaves like one in any other plain code.
CRITICAL = {"traced", "_close", "protected", "_batched_call", "setup", "cleanup", "run"}
STRIDE = 1 if SLOW else 11


def _ours(frame: Any) -> bool:
    name = frame.f_code.co_filename
    return name.startswith(FGRAD) or name.startswith("<fgrad")


def _opcode_events() -> bool:
    """Whether this Python reports opcode events to a trace function
    (3.12.1 ignores ``f_trace_opcodes``: there, lines are interrupted)."""
    events: list[str] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        events.append(event)
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return local

    sys.settrace(start)
    try:
        _one_line()
    finally:
        sys.settrace(None)
    return "opcode" in events


def _one_line() -> int:
    return len("x")


EVENT = "opcode" if _opcode_events() else "line"


def _run(fn: Callable[[], Any], at: int | None, only: frozenset[str] | None = None) -> tuple[list[str], bool]:
    """Run ``fn``, raising KeyboardInterrupt at the ``at``-th bytecode of
    fgrad's code (of its functions named in ``only``, if given); return the
    functions of the bytecodes met and whether the interrupt was raised."""
    seen: list[str] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == EVENT and (only is None or frame.f_code.co_name in only):
            seen.append(frame.f_code.co_name)
            if len(seen) == at:
                raise KeyboardInterrupt  # (a raising trace function is unset: one interrupt)
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        if _ours(frame):
            frame.f_trace_opcodes = True
            return local
        return None

    interrupted = False
    sys.settrace(start)
    try:
        fn()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sys.settrace(None)
    return seen, interrupted


def _steady(fn: Callable[[], Any]) -> list[str]:
    """The bytecodes ``fn`` runs once the caches its first calls fill (compiled
    pytree walks, a structure met twice) are full. (A bounded cache that is
    full may still be emptied now and then: a call may run more bytecodes.)"""
    counts = [len(_run(fn, None)[0]) for _ in range(3)]
    seen, _ = _run(fn, None)
    assert len(seen) <= max(counts), counts
    return seen


def _assert_nothing_left(errors: dict[str, str], where: str) -> None:
    assert traces.active_traces() == (), f"a trace was left on the active stack ({where})"
    assert gc.isenabled(), f"the garbage collector was left off ({where})"
    assert np.geterr() == errors, f"numpy's error settings were changed ({where})"
    assert vmap_module._inside.get() is False, f"vmap was left thinking it runs a batch ({where})"


def _w_times_x(w: Any) -> Any:
    return fg.sum(fg.vmap(lambda w, x: fg.relu(w * x), in_axes=(None, 0))(w, [1.0, -2.0, 3.0]))


CASES: dict[str, Callable[[], Any]] = {
    "grad": lambda: fg.grad(lambda x: fg.tanh(x) * x)(0.5),
    "grad of grad": lambda: fg.grad(fg.grad(lambda x: fg.exp(x) * x))(0.5),
    "jvp": lambda: fg.jvp(lambda x: fg.sin(x) * x, (0.5,), (1.0,)),
    "jit of grad": lambda: fg.jit(fg.grad(lambda x: fg.tanh(x) * x))(0.5),
    "jit of grad of vmap": lambda: fg.jit(fg.grad(_w_times_x))(2.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_interrupt_at_any_bytecode_leaves_no_trace_and_the_collector_on(name: str) -> None:
    fn = CASES[name]
    gc.enable()
    errors = np.geterr()
    seen = _steady(fn)
    picked = [k for k, func in enumerate(seen, 1) if func in CRITICAL or k % STRIDE == 0]
    assert len(picked) > 10  # the functions above were found
    missed = 0
    for k in picked:
        _, interrupted = _run(fn, k)
        missed += not interrupted  # (a call that ran fewer bytecodes than counted just finished)
        _assert_nothing_left(errors, f"{name}, interrupted in {seen[k - 1]} at bytecode {k}")
    assert missed <= 0.05 * len(picked)


def test_after_interrupts_jit_compiles_and_vmap_batches_again() -> None:
    errors = np.geterr()
    seen = _steady(CASES["jit of grad of vmap"])
    for k in range(1, len(seen), max(1, len(seen) // 50)):
        _run(CASES["jit of grad of vmap"], k)
    _assert_nothing_left(errors, "after the interrupts")
    step = fg.jit(fg.grad(_w_times_x))
    assert step(2.0) == step(2.0) == 4.0
    assert step.cache_info().traces == 1  # compiled, not run as plain Python inside a stale trace
    assert "over the batch" in step.source(2.0)  # vmap's numpy backend, not the loop


def test_an_interrupted_jitted_call_leaves_its_cache_usable() -> None:
    def f(x: Any, k: int) -> Any:
        return fg.tanh(x) * k if x > 0 else x

    step = fg.jit(fg.grad(f), static_argnums=1, cache_size=3)  # every new k traces; old ones go
    errors = np.geterr()
    # Every bytecode of the functions that hold jit's cache and lock and open
    # its trace (the rest runs the same code as any transform, tested above).
    jit_own = CRITICAL | {"__call__", "_new_path", "lookup", "store", "_add", "_release", "trace_path"}
    for k in range(-6, 0):  # misses, until the cache is full and every miss evicts
        seen, _ = _run(lambda k=k: step(0.5, k), None, jit_own)
    for k in range(1, len(seen) + 1):
        _, interrupted = _run(lambda k=k: step(0.5, k), k, jit_own)  # a new static value: a miss
        assert interrupted
        _assert_nothing_left(errors, f"a jitted call, interrupted in {seen[k - 1]} at bytecode {k}")
        assert not step._lock._is_owned(), f"the cache's lock was left held ({seen[k - 1]}, bytecode {k})"
        assert step(-0.5, 1) == 1.0 and step(0.5, 2) == fg.grad(f)(0.5, 2)  # hits and misses still work
    info = step.cache_info()
    assert info.entries <= 3 and info.hits + info.misses >= 2 * len(seen)


def test_an_interrupt_in_debug_nans_leaves_nan_debugging_as_it_was() -> None:
    def debugged() -> None:
        with fg.debug_nans():
            fg.grad(lambda x: x * 2.0)(1.0)

    seen = _steady(debugged)
    for k in range(1, len(seen) + 1):
        _run(debugged, k)
        assert core.DEBUG_NANS is False, f"nan debugging left on ({seen[k - 1]}, bytecode {k})"
        assert traces.active_traces() == ()
