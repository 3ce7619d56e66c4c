"""The classes :func:`fgrad.io.load` may rebuild, each under the name files give it.

``by_name`` maps a file's name for a class to the class (what loading looks up,
so a file can name only what was registered); ``name_of`` maps a class to the
name ``save`` writes for it, the first it was registered under. fgrad.nn's
classes are registered here under their default names (``fgrad.nn:MLP`` ...),
which files saved before name them by.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from fgrad import nn
from fgrad.io.read import is_namedtuple, show

C = TypeVar("C", bound=type)

by_name: dict[str, type] = {}
name_of: dict[type, str] = {}


def register(cls: C, *, name: str | None = None) -> C:
    """Let :func:`load` rebuild a dataclass or namedtuple; usable as a decorator.

    Args:
        cls: the class; files name it, and loading looks the name up here.
        name: the name in files, ``"module:QualName"`` by default. Register again
            under an old name to keep old files loadable (save writes the first).

    >>> from collections import namedtuple
    >>> from fgrad.io import dumps, loads
    >>> Point = register(namedtuple("Point", "x y"))
    >>> loads(dumps(Point(1.0, -0.0)))
    Point(x=1.0, y=-0.0)
    """
    if not isinstance(cls, type) or not (is_namedtuple(cls) or dataclasses.is_dataclass(cls)):
        raise TypeError(f"register: cls: expected a dataclass or namedtuple class, got {show(cls)}")
    if getattr(cls, "__tree_leaf__", False):
        raise TypeError(f"register: {cls.__qualname__} is a pytree leaf (__tree_leaf__), not a container")
    if is_namedtuple(cls):
        fields = getattr(cls, "_fields")  # noqa: B009 (mypy knows cls only as a type)
        names_ok = type(fields) is tuple and all(type(f) is str for f in fields)
        if not names_ok or len(set(fields)) != len(fields):
            raise TypeError(
                f"register: {cls.__qualname__}._fields must be a tuple of distinct str field "
                f"names, as collections.namedtuple makes it; got {show(fields)}"
            )
    else:
        try:  # what load does: an instance without running any code of the class
            object.__new__(cls)
        except TypeError as e:  # an abstract class; a subclass of dict, list, Exception ...
            raise TypeError(
                f"register: load could not rebuild a {cls.__qualname__} without calling its "
                f"constructor ({e}); register a plain dataclass"
            ) from None
    default = f"{cls.__module__}:{cls.__qualname__}"
    if name is None:
        name = default
    elif not isinstance(name, str):
        raise TypeError(
            f"register: name must be a str (the class's name in files), got "
            f"{type(name).__name__} {show(name)}; pass a name such as {default!r}"
        )
    name = str.__str__(name)  # a plain str: no method of a str subclass runs later
    if not name.strip():
        raise ValueError(
            f"register: name must not be empty or blank, got {show(name)}; pass a name such as "
            f"{default!r} (the default)"
        )
    old = by_name.get(name)
    # The same module and qualname: the class defined anew (module reloaded, cell re-run).
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register: the name {show(name)} is taken by {show(old)}; pass another name=")
    by_name[name] = cls
    name_of.setdefault(cls, name)
    return cls


for _cls in (nn.Neuron, nn.Layer, nn.MLP):
    register(_cls)
