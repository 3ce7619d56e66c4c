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
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import stat
import struct
from typing import Any, TypeVar

from pyrsistent import CheckedType, PMap, PVector

from fgrad import nn
from fgrad.engine.tree import _sorted_keys  # the key order fgrad.engine.tree flattens a PMap in
from fgrad.io.read import FORMAT, VERSION, LoadError, Reader, is_namedtuple, layout, show

__all__ = ["LoadError", "save", "load", "dumps", "loads", "register", "MAX_DEPTH", "MAX_BYTES"]

MAX_DEPTH = 100  # nested containers: deep enough for any model, shallow enough for the stack
MAX_BYTES = 1 << 28  # 256 MiB, some ten million floats
_WIDTH = 100
# JSON readers refuse longer ints (Python's by default: sys.get_int_max_str_digits), so save does too.
_MAX_INT_DIGITS = 4300
_INT_BOUND = 10**_MAX_INT_DIGITS
_QNAN, _SIGN = 0x7FF8000000000000, 1 << 63

C = TypeVar("C", bound=type)


_by_name: dict[str, type] = {}
_name_of: dict[type, str] = {}


def register(cls: C, *, name: str | None = None) -> C:
    """Let :func:`load` rebuild a dataclass or namedtuple; usable as a decorator.

    Args:
        cls: the class; files name it, and loading looks the name up here.
        name: the name in files, ``"module:QualName"`` by default. Register again
            under an old name to keep old files loadable (save writes the first).

    >>> from collections import namedtuple
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
    old = _by_name.get(name)
    # The same module and qualname: the class defined anew (module reloaded, cell re-run).
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register: the name {show(name)} is taken by {show(old)}; pass another name=")
    _by_name[name] = cls
    _name_of.setdefault(cls, name)
    return cls


for _cls in (nn.Neuron, nn.Layer, nn.MLP):
    register(_cls)


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x  # json writes float.__repr__, which reads back exactly
    if not math.isnan(x):
        return {"float": "inf" if x > 0 else "-inf"}
    bits = int.from_bytes(struct.pack("<d", x), "little")
    return {"float": {_QNAN: "nan", _QNAN | _SIGN: "-nan"}.get(bits, f"nan:0x{bits:016x}")}


def _where(path: str) -> str:
    return (path if len(path) <= 100 else f"{path[:40]}...{path[-50:]}") or "the root"


def _int(x: int, what: str, path: str) -> int:
    if -_INT_BOUND < x < _INT_BOUND:
        return x
    raise ValueError(
        f"save: the {what} at {_where(path)} has more than {_MAX_INT_DIGITS} digits "
        f"({x.bit_length()} bits), and JSON readers (Python's included) refuse such ints; "
        f"convert it (to a float or a str) or split it"
    )


def _key(v: Any, what: str, path: str, depth: int) -> Any:
    """Encode a dict key or a static field's value: scalars and tuples of them."""
    t = type(v)
    if v is None or t is str or t is bool:
        return v
    if t is int:
        return _int(v, what, path)
    if t is float:
        return _float(v)
    if t is tuple:
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"save: the {what} at {_where(path)} is tuples nested deeper than {MAX_DEPTH} levels"
            )
        return {"tuple": [_key(e, what, f"{path}[{i}]", depth + 1) for i, e in enumerate(v)]}
    raise TypeError(
        f"save: the {what} at {_where(path)} is {t.__name__} {show(v)}; keys and "
        f"static fields must be str, int, float, bool, None or tuples of them"
    )


def _field(x: Any, name: str, path: str) -> Any:
    try:
        return getattr(x, name)
    except AttributeError:
        raise TypeError(
            f"save: the {type(x).__qualname__} at {_where(path)} has no value for its field "
            f"{name!r} (made without its constructor?); give it one"
        ) from None


def _encode(x: Any, path: str, depth: int) -> Any:
    t = type(x)
    if t is float:
        return _float(x)
    if x is None or t is bool:
        return x
    if t is int:
        return _int(x, "int", path)
    at = _where(path)
    if depth >= MAX_DEPTH:
        raise ValueError(f"save: the tree is nested deeper than {MAX_DEPTH} levels at {at} (a cycle?)")
    depth += 1
    if t is list or t is tuple or (isinstance(x, PVector) and not isinstance(x, CheckedType)):
        tag = "list" if t is list else "tuple" if t is tuple else "pvector"
        return {tag: [_encode(v, f"{path}[{i}]", depth) for i, v in enumerate(x)]}
    if t is dict or t is PMap:
        # Keys are checked before a PMap is sorted, and dict items are read without a lookup:
        # no hash, comparison or repr of a key that cannot be saved ever runs.
        pairs = [(k, v, f"{path}[{show(k)}]") for k, v in x.items()]
        keys = [_key(k, "dict key", at_k, depth) for k, _, at_k in pairs]
        if t is PMap:
            rank = {id(k): i for i, k in enumerate(_sorted_keys([k for k, _, _ in pairs]))}
            order = sorted(range(len(pairs)), key=lambda i: rank[id(pairs[i][0])])
            pairs, keys = [pairs[i] for i in order], [keys[i] for i in order]
        return {
            "dict" if t is dict else "pmap": [
                [key, _encode(v, at_k, depth)] for key, (_, v, at_k) in zip(keys, pairs)
            ]
        }
    namedtuple = isinstance(x, tuple) and is_namedtuple(t)
    if namedtuple or (
        dataclasses.is_dataclass(x) and not isinstance(x, type) and not getattr(t, "__tree_leaf__", False)
    ):
        name = _name_of.get(t)
        if name is None:
            raise TypeError(
                f"save: {t.__qualname__} at {at} is not registered, so it could not be "
                f"loaded back; decorate the class with @fgrad.io.register"
            )
        if namedtuple:
            if tuple.__len__(x) != len(t._fields):
                raise TypeError(
                    f"save: the {t.__qualname__} at {at} holds {tuple.__len__(x)} values for its "
                    f"{len(t._fields)} fields (made without its constructor?); rebuild it"
                )
            fields = {n: _encode(v, f"{path}.{n}", depth) for n, v in zip(t._fields, tuple.__iter__(x))}
            return {"namedtuple": {"type": name, "fields": fields}}
        kids, static = layout(t)
        body = {"type": name, "fields": {n: _encode(_field(x, n, path), f"{path}.{n}", depth) for n in kids}}
        if static:
            body["static"] = {
                n: _key(_field(x, n, path), "static field", f"{path}.{n}", depth) for n in static
            }
        return {"dataclass": body}
    if isinstance(x, (list, tuple, dict, PMap, PVector)):
        raise TypeError(
            f"save: cannot save the {t.__name__} at {at}: subclasses of tuple, list, dict, "
            f"PMap and PVector would not load back as themselves; convert it first"
        )
    # Subclasses (numpy.float64, IntEnum) are saved as the number they are; no method of theirs runs.
    if isinstance(x, float):
        return _float(float.__float__(x))
    if isinstance(x, int):
        return _int(int.__int__(x), "int", path)
    raise TypeError(
        f"save: cannot save {t.__name__} {show(x)} at {at}: leaves must be float, int or "
        f"bool (a parameter file holds numbers)"
    )


def _lay(obj: Any, indent: str) -> tuple[str | None, str]:
    """(``obj`` on one line if that fits in _WIDTH, else None; ``obj`` laid out at ``indent``).

    Bottom-up, so each value becomes text once. Tags and keys hug: ``["w", {"list": [``.
    """
    if not isinstance(obj, (list, dict)) or not obj:
        text = repr(obj) if type(obj) is float else json.dumps(obj, allow_nan=False)
        return text, text
    if isinstance(obj, dict):
        (opening, closing), items = "{}", [(json.dumps(k) + ": ", v) for k, v in obj.items()]
    else:
        (opening, closing), items = "[]", [("", v) for v in obj]
    nested = [isinstance(v, (list, dict)) for _, v in items]
    hug = len(items) == 1 if opening == "{" else (len(items) == 2 and nested == [False, True])
    inner = indent if hug else indent + "  "
    laid = [(head, *_lay(v, inner)) for head, v in items]
    flat: str | None = None
    if all(f is not None for _, f, _ in laid):
        flat = opening + ", ".join(h + str(f) for h, f, _ in laid) + closing
        if len(indent) + len(flat) <= _WIDTH:
            return flat, flat
        flat = flat if len(flat) <= _WIDTH else None
    texts = [h + t for h, _, t in laid]
    if hug:
        return flat, opening + ", ".join(texts) + closing
    if not any(nested):  # fill lines with numbers
        lines = texts[:1]
        for t in texts[1:]:
            fits = len(inner) + len(lines[-1]) + len(t) + 2 <= _WIDTH
            lines[-1:] = [f"{lines[-1]}, {t}"] if fits else [lines[-1], t]
        texts = lines
    return flat, opening + "\n" + ",\n".join(inner + t for t in texts) + "\n" + indent + closing


def dumps(tree: Any) -> str:
    """The text :func:`save` writes for ``tree``: ASCII JSON ending in a newline.

    >>> print(dumps({"w": [0.5, float("nan")], "b": -0.0}), end="")
    {
      "format": "fgrad-tree",
      "version": 1,
      "tree": {"dict": [["w", {"list": [0.5, {"float": "nan"}]}], ["b", -0.0]]}
    }
    """
    return _lay({"format": FORMAT, "version": VERSION, "tree": _encode(tree, "", 0)}, "")[1] + "\n"


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
    target = os.path.realpath(name)  # the file the links lead to, so that os.replace keeps the links
    try:
        old = os.stat(target)  # a loop of links raises here, as open() would
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise IsADirectoryError(errno.EISDIR, "save: path is a directory; name a file in it", name)
    if old is not None and not stat.S_ISREG(old.st_mode):  # a FIFO, a device, a socket
        raise ValueError(
            f"save: {name!r} is not a regular file (a FIFO, a device or a socket), which an "
            "atomic save would replace by one; save to a regular file"
        )
    if old is not None and not os.access(target, os.W_OK):
        raise PermissionError(
            errno.EACCES,
            "save: the file is not writable, so it is left alone; change its permissions or save elsewhere",
            name,
        )
    directory, base = os.path.split(target)
    tmp = os.path.join(directory, f".{base[:32]}.{secrets.token_hex(8)}.tmp")  # short: within NAME_MAX
    try:
        # Not tempfile.mkstemp: its files are 0o600, a new file here gets 0o666 less the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:  # name the file asked for, not the temporary one
        why = " (to write it, save makes a file in its directory)" if isinstance(e, PermissionError) else ""
        raise OSError(e.errno, f"{e.strerror}{why}", target) from None
    try:
        with open(fd, "wb") as f:
            if old is not None:
                _keep_owner_and_mode(f.fileno(), old)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every system can open or fsync a directory
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    """Give the new file the replaced one's permission bits and, where allowed, its owner."""
    if hasattr(os, "fchown") and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != (old.st_uid, old.st_gid):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, old.st_uid, old.st_gid)
    if hasattr(os, "fchmod"):  # elsewhere (Windows) the only bit is read-only, refused above
        with contextlib.suppress(OSError):  # a file system without modes (vfat) fixes them itself
            os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)  # not setuid, setgid or sticky


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
    return Reader(source, max_depth, _by_name).document(text)
