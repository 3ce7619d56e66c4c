"""The loading side of :mod:`fgrad.io`: check a parsed file node by node, build its tree.

Everything a file's contents can make fgrad do happens here, so this module
uses no import machinery, evaluates nothing and runs no constructor: classes
come only from the registry it is handed (:func:`fgrad.io.register`'s) and are
filled in with ``object.__setattr__``, as fgrad.engine.tree does. Every fault is a
:class:`LoadError` naming the file, where in it, and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections import Counter
from typing import Any, NoReturn

from pyrsistent import pmap, pvector

FORMAT = "fgrad-tree"
VERSION = 1
MAX_DEPTH = 100  # nested containers: deep enough for any model, shallow enough for the stack
SEQ_TAGS = ("list", "pvector", "tuple")
TREE_TAGS = ("float", *SEQ_TAGS, "dict", "pmap", "namedtuple", "dataclass")
KEY_TAGS = ("float", "tuple")


class LoadError(ValueError):
    """A file that is not a valid fgrad tree: says which file, where and what."""

    def __init__(self, source: str, where: str, reason: str) -> None:
        where = where if len(where) <= 100 else f"{where[:40]}...{where[-50:]}"  # a deep path
        super().__init__(f"cannot load {source}: {where}: {reason}")
        self.source, self.where, self.reason = source, where, reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.where, self.reason))


LoadError.__module__ = "fgrad.io"  # its public home: tracebacks and pickles name it there


def is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def layout(cls: type) -> tuple[list[str], list[str]]:
    """(leaf fields, static fields) of a dataclass, in declaration order."""
    fields = dataclasses.fields(cls)
    return (
        [f.name for f in fields if not f.metadata.get("static")],
        [f.name for f in fields if f.metadata.get("static")],
    )


def show(x: Any) -> str:
    """A short description of a value for an error message, whatever it is.

    Its repr may be huge, slow to make (a long int) or raise: the message must come out anyway.
    """
    t = type(x)
    if (t is list or t is dict) and len(x) > 5:
        return f"a JSON {'array' if t is list else 'object'} of {len(x)} items"
    if isinstance(x, int) and int.bit_length(x) > 200:
        return f"an int of {int.bit_length(x)} bits"
    try:
        text = str.__str__(repr(x))
    except Exception:  # a user's __repr__ that raises, a nesting too deep for repr, a long int in a tuple
        text = f"<a {t.__name__} whose repr fails>"
    return text if len(text) <= 60 else text[:57] + "..."


class Parser:
    """Parses a file's text as JSON, more strictly than ``json.loads``, and checks its header.

    The hooks refuse what Python's JSON reader lets through: a key twice in one
    object, a number too large for a float, and ``NaN`` or ``Infinity``.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, reason: str) -> NoReturn:
        raise LoadError(self.source, where, reason)

    def tree_of(self, text: str) -> Any:
        """The parsed, unchecked ``"tree"`` of a document whose format and version are fgrad's."""
        try:
            doc = json.loads(
                text, object_pairs_hook=self.pairs, parse_float=self.number, parse_constant=self.constant
            )
        except LoadError:
            raise
        except json.JSONDecodeError as e:
            end = " (the text ends early: truncated?)" if e.pos >= len(text.rstrip()) else ""
            self.fail(f"line {e.lineno}, column {e.colno}", f"not valid JSON: {e.msg}{end}")
        except (RecursionError, ValueError) as e:  # too deep; an int of over 4300 digits
            self.fail("while parsing", f"not valid JSON: {show(str(e))}")
        if type(doc) is not dict or doc.get("format") != FORMAT:
            self.fail("at $.format", f'not an fgrad tree file (expected {{"format": "{FORMAT}", ...}})')
        version = doc.get("version")
        if type(version) is not int or version != VERSION:
            newer = type(version) is int and version > VERSION
            self.fail(
                "at $.version",
                f"version {show(version)} is not supported, only {VERSION}"
                + (" (written by a newer fgrad: upgrade)" if newer else ""),
            )
        if doc.keys() != {"format", "version", "tree"}:
            self.fail("at $", f'expected the keys "format", "version" and "tree", got {show(list(doc))}')
        return doc["tree"]

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
            self.fail("while parsing", f"a JSON object has the key {show(twice)} twice")
        return out

    def number(self, text: str) -> float:
        x = float(text)
        if not math.isfinite(x):
            self.fail("while parsing", f'{show(text)} overflows a float; write {{"float": "inf"}}')
        return x

    def constant(self, text: str) -> NoReturn:
        self.fail("while parsing", f'{text} is not JSON; write {{"float": "nan"}}, "inf" or "-inf"')


class Reader(Parser):
    """Checks a parsed document node by node and builds the tree it describes."""

    def __init__(self, source: str, max_depth: int, registry: dict[str, type]) -> None:
        super().__init__(source)
        self.max_depth, self.registry = max_depth, registry

    def document(self, text: str) -> Any:
        tree = self.tree_of(text)
        try:
            return self.value(tree, "$.tree", 0, False)
        except RecursionError:
            self.fail("at $.tree", f"nested too deeply for the stack; lower max_depth={self.max_depth}")

    def value(self, obj: Any, where: str, depth: int, key: bool) -> Any:
        """Decode ``obj`` found at ``where``: a tree node, or a key/static value if ``key``."""
        t = type(obj)
        if obj is None or t is float or t is int or t is bool or (t is str and key):
            return obj
        if t is not dict or len(obj) != 1:
            self.fail(
                f"at {where}",
                f'expected a number, null or a tagged object like {{"list": [...]}}, '
                f"got {show(obj)}" + ("; strings are only keys and static fields" if t is str else ""),
            )
        [(tag, body)] = obj.items()
        tags = KEY_TAGS if key else TREE_TAGS
        if tag not in tags:
            self.fail(f"at {where}", f"the tag {show(tag)} is not one of {', '.join(tags)}")
        where = f"{where}.{tag}"
        if tag == "float":
            return self.special_float(body, where)
        if depth >= self.max_depth:
            self.fail(f"at {where}", f"containers nested deeper than max_depth={self.max_depth}")
        depth += 1
        if tag != "namedtuple" and tag != "dataclass" and type(body) is not list:
            self.fail(f"at {where}", f"expected a JSON array, got {show(body)}")
        if tag in ("dict", "pmap"):
            out: dict[Any, Any] = {}
            for i, pair in enumerate(body):
                if type(pair) is not list or len(pair) != 2:
                    self.fail(f"at {where}[{i}]", f"expected a [key, value] pair, got {show(pair)}")
                k = self.value(pair[0], f"{where}[{i}][0]", depth, True)
                if k in out:
                    self.fail(f"at {where}[{i}][0]", f"the key {show(k)} appears twice")
                out[k] = self.value(pair[1], f"{where}[{i}][1]", depth, False)
            return out if tag == "dict" else pmap(out)
        if tag in SEQ_TAGS:
            items = [self.value(v, f"{where}[{i}]", depth, key) for i, v in enumerate(body)]
            return items if tag == "list" else tuple(items) if tag == "tuple" else pvector(items)
        return self.record(tag, body, where, depth)

    def special_float(self, body: Any, where: str) -> float:
        if body in ("nan", "-nan", "inf", "-inf"):
            return -math.nan if body == "-nan" else float(body)
        if type(body) is str and re.fullmatch("nan:0x[0-9a-f]{16}", body):
            x: float = struct.unpack("<d", int(body[6:], 16).to_bytes(8, "little"))[0]
            if math.isnan(x):
                return x
        self.fail(
            f"at {where}",
            f'expected "nan", "-nan", "inf", "-inf" or "nan:0x" and the 16 hex '
            f"digits of a nan, got {show(body)}",
        )

    def record(self, tag: str, body: Any, where: str, depth: int) -> Any:
        allowed = {"type", "fields", "static"} if tag == "dataclass" else {"type", "fields"}
        if type(body) is not dict or not {"type", "fields"} <= body.keys() <= allowed:
            self.fail(f"at {where}", f'expected {{"type": ..., "fields": {{...}}}}, got {show(body)}')
        name = body["type"]
        cls = self.registry.get(name) if type(name) is str else None
        if cls is None:
            self.fail(
                f"at {where}.type",
                f"the type {show(name)} is not registered; call "
                f"fgrad.io.register(<that class>) before loading (load never imports modules)",
            )
        if (tag == "namedtuple") != is_namedtuple(cls):
            self.fail(f"at {where}.type", f"{name} is registered, but is not a {tag}")
        if tag == "namedtuple":
            names = list(getattr(cls, "_fields"))  # noqa: B009 (mypy knows cls only as a type)
            return tuple.__new__(cls, self.fields(body["fields"], names, f"{where}.fields", depth, False))
        leaf_names, static_names = layout(cls)
        kids = self.fields(body["fields"], leaf_names, f"{where}.fields", depth, False)
        statics = self.fields(body.get("static", {}), static_names, f"{where}.static", depth, True)
        obj: Any = object.__new__(cls)
        for n, v in [*zip(leaf_names, kids, strict=True), *zip(static_names, statics, strict=True)]:
            object.__setattr__(obj, n, v)
        return obj

    def fields(self, body: Any, names: list[str], where: str, depth: int, key: bool) -> list[Any]:
        if type(body) is not dict or body.keys() != set(names):
            self.fail(
                f"at {where}",
                f"expected the fields {show(names)} of the registered class, "
                f"got {show(list(body) if type(body) is dict else body)}",
            )
        return [self.value(body[n], f"{where}.{n}", depth, key) for n in names]
