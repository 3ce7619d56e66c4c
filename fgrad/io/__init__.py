"""Save and load pytrees of parameters: exact, atomic, and safe to load.

``save(tree, path)`` writes readable JSON; ``load(path)`` rebuilds the tree with
the same container types and bit-identical floats (nan, inf, -0.0, subnormals,
even a nan's sign and payload). The format, version 1::

    {"format": "fgrad-tree", "version": 1, "tree": VALUE}
    VALUE   0.5, -0.0, 5e-324         a float: its repr, always with "." or "e"
            {"float": "nan"}          or "-nan", "inf", "-inf", "nan:0x7ff8000000000001"
            3, true, null             an int, a bool, None
            {"list": [VALUE, ...]}    likewise "pvector" and "tuple"
            {"dict": [[KEY, VALUE], ...]}    likewise "pmap" (dict order kept, PMap sorted)
            {"namedtuple": {"type": NAME, "fields": {"x": VALUE, ...}}}
            {"dataclass": {"type": NAME, "fields": {...}, "static": {"n": KEY}}}
    KEY     a string, int, float, bool, null, or {"tuple": [KEY, ...]}

Leaves are floats (float subclasses such as numpy.float64 too), ints (of at
most 4300 digits, as JSON readers take them) and bools; strings are only keys
and static fields. ``save`` refuses anything else, and container subclasses,
naming the tree path. ``load`` never imports, evaluates or
unpickles: it rebuilds only dataclasses and namedtuples given to :func:`register`
(fgrad.nn's are), bypassing their constructors as fgrad.engine.tree does, so no code of
theirs runs. A bad, truncated or hostile file raises :class:`LoadError`, a
ValueError naming the file, the line and column or JSON path, and the fault.

The work is done in the modules of this package: :mod:`fgrad.io.registry` holds
the classes :func:`register` names, :mod:`fgrad.io.write` encodes a tree, lays it
out and writes the file, and :mod:`fgrad.io.read` checks a file and builds its tree.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from fgrad.io.read import FORMAT, MAX_DEPTH, VERSION, LoadError, Reader, show
from fgrad.io.registry import by_name, register
from fgrad.io.write import encode, lay, write_atomic

__all__ = ["LoadError", "save", "load", "dumps", "loads", "register", "MAX_DEPTH", "MAX_BYTES"]

MAX_BYTES = 1 << 28  # 256 MiB, some ten million floats


def dumps(tree: Any) -> str:
    """The text :func:`save` writes for ``tree``: ASCII JSON ending in a newline.

    >>> print(dumps({"w": [0.5, float("nan")], "b": -0.0}), end="")
    {
      "format": "fgrad-tree",
      "version": 1,
      "tree": {"dict": [["w", {"list": [0.5, {"float": "nan"}]}], ["b", -0.0]]}
    }
    """
    return lay({"format": FORMAT, "version": VERSION, "tree": encode(tree, "", 0)}, "")[1] + "\n"


def _file_name(path: Any, fn: str) -> str:
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{fn}: path must be a file name (a str or os.PathLike), got {type(path).__name__} {show(path)}"
        )
    name = os.fsdecode(path)
    if not name or "\0" in name:
        raise ValueError(f"{fn}: path is empty or holds a NUL character; name a file, got {show(name)}")
    return name


def _limit(value: Any, what: str, fn: str, none: bool) -> Any:
    """``value`` as an int >= 0 (or None if ``none``), else a clear error naming ``what``."""
    if value is None and none:
        return None
    expected = f"an int >= 0{' or None (no limit)' if none else ''}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{fn}: {what} must be {expected}, got {type(value).__name__} {show(value)}")
    if value < 0:
        raise ValueError(f"{fn}: {what} must be {expected}, got {show(value)}")
    return int.__int__(value)


def save(tree: Any, path: str | os.PathLike[str]) -> None:
    """Write a pytree of numbers to ``path`` atomically.

    The text goes to a temporary file in the same directory, flushed, fsynced
    and renamed over ``path`` (then the directory is fsynced where possible), so
    ``path`` holds the old file or the whole new one, never a torn one. On any
    error the temporary file is removed.

    As ``open(path, "w")`` would: a symbolic link is written through (the file
    it names is replaced and the link stays; a dangling link's target is
    created), an existing file keeps its permission bits (and its owner where
    the system allows), a new one gets ``0o666`` less the umask, and a file you
    cannot write is left alone. A file with other hard links gets a new inode:
    its other names keep the old data.

    Args:
        tree: a pytree of float, int and bool leaves (see the module doc).
        path: the file to write.

    Raises:
        TypeError: naming the tree path of what cannot be saved, or a bad ``path``.
        ValueError: a tree nested too deeply, an int too long for JSON, an empty ``path``.
        OSError: as ``open`` would raise it (a missing directory, a directory, a read-only file).

    >>> import os, tempfile
    >>> from pyrsistent import pmap
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save(pmap({"w": (1.5, float("-inf"))}), os.path.join(d, "params.json"))
    ...     load(os.path.join(d, "params.json"))
    pmap({'w': (1.5, -inf)})
    """
    name = _file_name(path, "save")
    if name.endswith(os.sep) or (os.altsep is not None and name.endswith(os.altsep)):
        raise IsADirectoryError(
            errno.EISDIR, "save: path ends in a separator, so it names a directory; name a file", name
        )
    data = dumps(tree).encode("ascii")  # first: a tree that cannot be saved leaves no trace
    write_atomic(name, data)


def _read(f: Any, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``f``, in chunks: ``f.read(n)`` allocates ``n`` bytes first."""
    parts: list[bytes] = []
    left = limit + 1
    while left > 0:
        part = f.read(min(left, 1 << 24))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def load(
    path: str | os.PathLike[str], *, max_bytes: int | None = MAX_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """Read a pytree written by :func:`save`.

    Args:
        path: the file.
        max_bytes: refuse a larger file (None: no limit, for files you trust).
        max_depth: refuse containers nested deeper than this.

    Returns:
        The tree, with its container types and the exact bits of its floats.

    Raises:
        LoadError: not a valid fgrad tree file (it says where and why).
        TypeError, ValueError: a bad argument (not a path; a limit that is not an int >= 0).
    """
    source = _file_name(path, "load")
    max_bytes = _limit(max_bytes, "max_bytes", "load", none=True)
    max_depth = _limit(max_depth, "max_depth", "load", none=False)
    with open(source, "rb") as f:
        data = f.read() if max_bytes is None else _read(f, max_bytes)
    if max_bytes is not None and len(data) > max_bytes:
        raise LoadError(
            source,
            "the whole file",
            f"larger than max_bytes={max_bytes}; pass a larger max_bytes (or None) for a big file you trust",
        )
    return loads(data, max_depth=max_depth, source=source)


def loads(
    data: str | bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH, source: str = "<string>"
) -> Any:
    """Read a pytree from the text of a file (``source`` names it in errors).

    >>> loads('{"format": "fgrad-tree", "version": 1, "tree": {"tuple": [1.0, {"float": "-inf"}]}}')
    (1.0, -inf)
    >>> loads('{"format": "fgrad-tree", "version": 1, "tree": {"list": [1.0, ', source="p.json")
    Traceback (most recent call last):
    fgrad.io.LoadError: cannot load p.json: line 1, column 63: not valid JSON: ...
    """
    if not isinstance(source, str):
        raise TypeError(
            f"loads: source must be a str (what error messages call the text), got "
            f"{type(source).__name__} {show(source)}"
        )
    max_depth = _limit(max_depth, "max_depth", "loads", none=False)
    if isinstance(data, str):
        text = str.__str__(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise LoadError(source, f"line {line}, byte {e.start}", f"not UTF-8 ({e.reason})") from None
    else:
        hint = "; to read a file, call fgrad.io.load(path)" if isinstance(data, os.PathLike) else ""
        raise TypeError(
            f"loads: data must be the text of a file, a str or bytes, got "
            f"{type(data).__name__} {show(data)}{hint}"
        )
    if not text.strip():
        raise LoadError(source, "line 1", "the file is empty (truncated?)")
    return Reader(source, max_depth, by_name).document(text)
