"""jit at the edges: strict cache keys, numpy scalars and arrays, nan
constants, the first call, nan debugging, clear errors and hostile inputs.

Results are compared with eager calls bit for bit, nan payloads included.
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

import pytest

import fgrad as fg

jit_module = sys.modules["fgrad.jit"]


def exact(tree: Any) -> list[Any]:
    """Every leaf's bits (a nan's sign and payload too), and its type where it is not a float."""
    out: list[Any] = []
    for leaf in fg.tree_leaves(tree):
        if isinstance(leaf, float):
            out.append(struct.pack("<d", leaf))
        else:
            out.append((type(leaf), leaf))
    return out


def nan_with(payload: int, negative: bool = False) -> float:
    x: float = struct.unpack("<Q", struct.pack("<Q", (0xFFF << 52 if negative else 0x7FF << 52)
                                                    | (1 << 51) | payload))[0]
    return struct.unpack("<d", struct.pack("<Q", x))[0]  # type: ignore[no-any-return]


NAN_A, NAN_B, NEG_NAN = nan_with(1), nan_with(0xBEEF), nan_with(0, negative=True)


def test_the_nans_used_here_differ_in_bits() -> None:
    assert len({struct.pack("<d", x) for x in (NAN_A, NAN_B, NEG_NAN, math.nan)}) == 4
    assert all(x != x for x in (NAN_A, NAN_B, NEG_NAN))


def calls(step: Any, f: Any, argsets: list[tuple[Any, ...]], **kwargs: Any) -> None:
    """Each call of ``step`` (twice: the tracing call and a cached one) equals ``f``'s, bit for bit."""
    for args in argsets + argsets:
        assert exact(step(*args, **kwargs)) == exact(f(*args, **kwargs)), args


# 2. Guards against numpy scalars -------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, None], ids=["table", "compiled"])
def test_guards_against_numpy_scalars_hold_in_both_modes(limit: Any) -> None:
    np = pytest.importorskip("numpy")

    def f(x: Any) -> Any:
        y = x * 2.0 if x > np.float64(0.5) else x
        z = y * np.float32(3.0) if np.float64(0.25) < y else y
        return z + 1.0 if x != np.int64(4) else z

    step = fg.jit(f, max_compiled_ops=limit)
    for x in (1.0, 2.0, 3.0, 1.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 1
    for x in (0.1, 4.0, 0.1, 4.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 3


# 3. Non-finite constants --------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, None], ids=["table", "compiled"])
def test_nan_and_infinite_constants_keep_their_bits(limit: Any) -> None:
    def f(x: Any) -> Any:
        return x + NAN_A, x * NAN_B, x - NEG_NAN, fg.div(x, math.inf), x * -math.inf, x > NAN_A

    step = fg.jit(f, max_compiled_ops=limit)
    for x in (2.0, 3.0, -1.0):
        assert exact(step(x)) == exact(f(x))
    assert step.cache_info().traces == 1
    if limit is None:
        assert "NAN" not in step.source(2.0)


def test_ints_too_long_for_repr_are_constants_too() -> None:
    step = fg.jit(lambda x, n: x * 2.0 if x < n else x, static_argnums=1)
    for _ in range(2):
        assert step(1.0, 10**5000) == 2.0 and step(1.0, -(10**5000)) == 1.0


