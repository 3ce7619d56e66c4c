"""The saving side of :mod:`fgrad.io`: a tree encoded as JSON values, laid out as text, written atomically.

``encode`` turns a pytree into the values of the file format (see the
:mod:`fgrad.io` doc), refusing what would not load back as itself and naming
its tree path; ``lay`` lays those values out as readable text; ``write_atomic``
puts the bytes in a file through a temporary file and a rename.
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
from typing import Any

from pyrsistent import CheckedType, PMap, PVector

from fgrad.engine.tree import _sorted_keys  # the key order fgrad.engine.tree flattens a PMap in
from fgrad.io.read import MAX_DEPTH, is_namedtuple, layout, show
from fgrad.io.registry import name_of

_WIDTH = 100
# JSON readers refuse longer ints (Python's by default: sys.get_int_max_str_digits), so save does too.
_MAX_INT_DIGITS = 4300
_INT_BOUND = 10**_MAX_INT_DIGITS
_QNAN, _SIGN = 0x7FF8000000000000, 1 << 63


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


def encode(x: Any, path: str, depth: int) -> Any:
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
        return {tag: [encode(v, f"{path}[{i}]", depth) for i, v in enumerate(x)]}
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
                [key, encode(v, at_k, depth)] for key, (_, v, at_k) in zip(keys, pairs)
            ]
        }
    namedtuple = isinstance(x, tuple) and is_namedtuple(t)
    if namedtuple or (
        dataclasses.is_dataclass(x) and not isinstance(x, type) and not getattr(t, "__tree_leaf__", False)
    ):
        name = name_of.get(t)
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
            fields = {n: encode(v, f"{path}.{n}", depth) for n, v in zip(t._fields, tuple.__iter__(x))}
            return {"namedtuple": {"type": name, "fields": fields}}
        kids, static = layout(t)
        body = {"type": name, "fields": {n: encode(_field(x, n, path), f"{path}.{n}", depth) for n in kids}}
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


def lay(obj: Any, indent: str) -> tuple[str | None, str]:
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
    laid = [(head, *lay(v, inner)) for head, v in items]
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


def write_atomic(name: str, data: bytes) -> None:
    """Write ``data`` to the file ``name`` as :func:`fgrad.io.save` describes: atomically,
    through symbolic links, keeping the replaced file's mode and owner."""
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
