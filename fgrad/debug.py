"""NaN debugging: raise at the first primitive that makes a nan.

``with fg.debug_nans():`` (or ``fg.set_debug_nans(True)``, process-wide) makes
every primitive, and every rule in the reverse and forward passes, check its
result: a nan made from inputs that were not nan raises :class:`NanError`
naming the primitive, its inputs and the line of your code that was running.
The switch is a plain global read on every operation, which costs about 1%.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fgrad.engine import core
from fgrad.engine.core import Primitive, _peel

__all__ = ["NanError", "debug_nans", "set_debug_nans"]


class NanError(FloatingPointError):
    """A primitive produced nan from inputs that were not nan (debug_nans)."""


def set_debug_nans(on: bool) -> None:
    """Turn nan debugging on or off for the whole process."""
    core.DEBUG_NANS = bool(on)


@contextmanager
def debug_nans(on: bool = True) -> Iterator[None]:
    """Raise :class:`NanError` at the first nan made from non-nan inputs.

    >>> import fgrad as fg
    >>> with fg.debug_nans():  # doctest: +ELLIPSIS
    ...     fg.grad(lambda x: fg.sqrt(x - 2.0))(1.0)
    Traceback (most recent call last):
    fgrad.debug.NanError: sqrt produced nan from inputs (-1.0,) at ...
    """
    before = core.DEBUG_NANS
    try:
        try:
            set_debug_nans(on)  # inside the try: an interrupt right after it still restores
            yield
        finally:
            set_debug_nans(before)
    finally:
        set_debug_nans(before)  # again, should an interrupt have cut the first short


def _report(prim: Primitive, inputs: tuple[Any, ...], where: str) -> None:
    """Raise NanError unless an input was nan already (then nan is expected)."""
    values = tuple(_peel(x) for x in inputs)
    if any(v != v for v in values if isinstance(v, (float, int))):
        return
    raise NanError(
        f"{prim.name}{where} produced nan from inputs {values!r} at {_user_line()}. "
        "Look at that operation's domain (log or sqrt of a negative, 0/0, inf - inf, "
        "0 * inf) or turn debug_nans off to let nan propagate."
    )


def _user_line() -> str:
    """``file:line (in function)`` of the innermost frame outside fgrad."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame = frame.f_back
    if frame is None:
        return "an unknown line"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} (in {frame.f_code.co_name})"


core.nan_found = _report
