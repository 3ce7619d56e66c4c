"""The lines of one numpy function being written, and the names they use.

Temporaries (``t1``), constants that have no exact literal (``K[0]``) and
the functions the code calls (``f0``, ``MAXIMUM``) are named here; the
namespace the source runs in maps those names to the objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fgrad.compilers.pysource import _dot
from fgrad.primitives import arith
from fgrad.primitives.reductions import _plain_sum

__all__ = ["CodeWriter"]


class CodeWriter:
    """Source lines of one compiled function, and the namespace it runs in."""

    def __init__(self, np: Any, guard_error: type[Exception]) -> None:
        self.lines: list[str] = []
        self.consts: list[Any] = []  # become the tuple ``K`` once the code is written
        self.funcs: dict[int, str] = {}
        self.namespace: dict[str, Any] = {
            "ARRAY": np.array,
            "CONCAT": np.concatenate,
            "MAXIMUM": np.maximum,
            "FULL": np.full,
            "FROMITER": np.fromiter,
            "ACCUMULATE": np.add.accumulate,
            "PLAIN_SUM": _plain_sum,
            "PLAIN_DOT": _dot,  # (the dot's impl over two lists, as scalar jit's DOT)
            "FLOAT": float,
            "DOT": np.dot,
            "GUARD": guard_error,
            "DIV": arith._div_impl,
            "NAN": float("nan"),
            "INF": float("inf"),
        }
        self.fresh = 0
        self.ndarray = np.ndarray

    def put(self, line: str) -> None:
        """One statement of the function's body."""
        self.lines.append("    " + line)

    def temp(self) -> str:
        """A new temporary's name."""
        self.fresh += 1
        return f"t{self.fresh}"

    def func(self, fn: Callable[..., Any]) -> str:
        """The name the code calls ``fn`` by, one per function."""
        name = self.funcs.get(id(fn))
        if name is None:
            name = f"f{len(self.funcs)}"
            self.funcs[id(fn)] = name
            self.namespace[name] = fn
        return name

    def constant(self, x: Any) -> str:
        """A constant's text: its literal where ``repr`` gives it back
        exactly (finite floats, ints of a machine word), else ``K[i]``."""
        if type(x) is float and x == x and abs(x) != float("inf"):
            return f"({x!r})"
        if type(x) is int and -(2**63) <= x < 2**63:  # (repr refuses ints of 4300+ digits)
            return f"({x!r})"
        if isinstance(x, self.ndarray) and x.flags.writeable:
            # Shared by every call: read-only, so that a primitive's numpy
            # version writing into its argument fails instead of changing
            # the next call's constants.
            x = x.view()
            x.flags.writeable = False
        self.consts.append(x)
        return f"K[{len(self.consts) - 1}]"
