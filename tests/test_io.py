"""fgrad.io: exact round trips, atomic writes, and loads that refuse hostile files."""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import json
import math
import os
import pickle
import stat
import struct
import sys
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import PMap, PVector, pmap, pvector

import fgrad as fg
import fgrad.io as fgio
import fgrad.io.read as ioread
from fgrad.io import LoadError
from fgrad.nn import MLP, Neuron

Pair = fgio.register(namedtuple("Pair", ["first", "second"]))


@fgio.register
@dataclass(frozen=True)
class Box:
    w: Any
    b: Any
    tag: Any = fg.static_field(default="box")


CALLS: list[str] = []


@fgio.register
@dataclass(frozen=True)
class Sentinel:
    """Records every constructor-like call: loading must make none."""

    w: Any
    name: Any = fg.static_field(default="s")

    def __new__(cls, *args: Any, **kwargs: Any) -> Sentinel:
        CALLS.append("__new__")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        CALLS.append("__post_init__")

    def __setstate__(self, state: Any) -> None:
        CALLS.append("__setstate__")


@dataclass(frozen=True)
class Unregistered:
    w: float


def header(tree: str) -> str:
    return '{"format": "fgrad-tree", "version": 1, "tree": ' + tree + "}"


def bits(x: float) -> int:
    return int.from_bytes(struct.pack("<d", x), "little")


def from_bits(b: int) -> float:
    x: float = struct.unpack("<d", b.to_bytes(8, "little"))[0]
    return x


def key_id(k: Any) -> Any:
    """A hashable identity for a dict key that tells 0.0 from -0.0 and 1 from 1.0 and True."""
    if type(k) is float:
        return ("float", bits(k))
    if type(k) is tuple:
        return ("tuple", tuple(key_id(e) for e in k))
    return (type(k).__name__, k)


def same(a: Any, b: Any) -> bool:
    """Exact equality: identical types everywhere, floats bit for bit, dict order kept."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return bits(a) == bits(b)
    if type(a) is dict:
        return [key_id(k) for k in a] == [key_id(k) for k in b] and all(
            same(x, y) for x, y in zip(a.values(), b.values())
        )
    if type(a) is PMap:
        ia = {key_id(k): (k, v) for k, v in a.items()}
        ib = {key_id(k): (k, v) for k, v in b.items()}
        return ia.keys() == ib.keys() and all(same(ia[k][1], ib[k][1]) for k in ia)
    if isinstance(a, (list, tuple, PVector)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


SPECIAL_FLOATS = [
    0.0,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    -math.nan,
    from_bits(0x7FF8000000000001),
    from_bits(0xFFF0000000000001),
    from_bits(0x7FF0000000000001),
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    0.1,
    1 / 3,
    1e16,
    123456789.125,
    2.0**-1074 * 3,
]

floats = (
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
    | st.sampled_from(SPECIAL_FLOATS)
    | st.integers(0, 2**64 - 1).map(from_bits)
)
scalar_keys = st.text(max_size=4) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
keys = scalar_keys | st.tuples(scalar_keys, scalar_keys)
statics = st.recursive(
    scalar_keys | floats, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=5
)
leaves = floats | st.integers() | st.booleans() | st.none()
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.lists(kids, max_size=4).map(pvector),
        st.lists(kids, max_size=4).map(tuple),
        st.dictionaries(keys, kids, max_size=4),
        st.dictionaries(keys, kids, max_size=4).map(pmap),
        st.builds(Pair, kids, kids),
        st.builds(Box, kids, kids, statics),
    ),
    max_leaves=25,
)


# Round trips -------------------------------------------------------------------------------


@given(trees)
def test_any_tree_round_trips_exactly(tree: Any) -> None:
    assert same(fgio.loads(fgio.dumps(tree)), tree)


@given(trees)
def test_saved_text_is_standard_json(tree: Any) -> None:
    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads(fgio.dumps(tree), parse_constant=no_constants)


@pytest.mark.parametrize("x", SPECIAL_FLOATS, ids=lambda x: f"{bits(x):016x}")
def test_special_floats_round_trip_bit_for_bit(tmp_path: Path, x: float) -> None:
    fgio.save([x], tmp_path / "x.json")
    (y,) = fgio.load(tmp_path / "x.json")
    assert bits(y) == bits(x) and math.copysign(1.0, y) == math.copysign(1.0, x)
    assert float.hex(y) == float.hex(x)


def test_special_floats_are_spelled_readably() -> None:
    text = fgio.dumps([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324])
    assert '{"float": "nan"}, {"float": "-nan"}, {"float": "inf"}, {"float": "-inf"}, -0.0, 5e-324' in text
    assert '"nan:0x7ff8000000000001"' in fgio.dumps(from_bits(0x7FF8000000000001))


def test_container_types_and_dict_order_are_preserved(tmp_path: Path) -> None:
    tree = {
        "z": pmap({"b": 1.0, "a": (2.0, None)}),
        "a": [pvector([3.0]), Pair(4.0, [5.0]), Box(6.0, {"k": 7.0}, tag=("relu", 2, True, None, 0.5))],
        3: True,
        (1, "x"): 8,
        -0.0: None,
    }
    fgio.save(tree, tmp_path / "t.json")
    loaded = fgio.load(tmp_path / "t.json")
    assert same(loaded, tree)
    assert list(loaded) == list(tree)
    assert type(loaded["z"]) is PMap and type(loaded["a"][1]) is Pair and type(loaded[3]) is bool
    assert fg.tree_structure(loaded) == fg.tree_structure(tree)


def test_ints_and_bools_stay_ints_and_bools() -> None:
    tree = [1, True, False, 0, -(10**100), 1.0]
    assert same(fgio.loads(fgio.dumps(tree)), tree)


def test_mlp_round_trips_and_still_runs(tmp_path: Path) -> None:
    model = MLP.init([2, 4, 3, 1], seed=3, style="sum")
    fgio.save(model, tmp_path / "mlp.json")
    loaded = fgio.load(tmp_path / "mlp.json")
    assert type(loaded) is MLP and loaded == model and same(loaded, model)
    assert fg.tree_structure(loaded) == fg.tree_structure(model)
    assert [bits(x) for x in fg.tree_leaves(loaded)] == [bits(x) for x in fg.tree_leaves(model)]
    assert loaded.style == "sum" and loaded.layers[-1].neurons[0].nonlin is False
    assert loaded([0.1, 0.2]) == model([0.1, 0.2])
    grads = fg.grad(lambda m: m([0.1, 0.2]))(loaded)
    assert fg.tree_structure(grads) == fg.tree_structure(model)


def test_pmap_text_does_not_depend_on_insertion_order() -> None:
    keys = [f"k{i}" for i in range(50)]
    a = pmap({k: 1.0 for k in keys})
    b = pmap({k: 1.0 for k in reversed(keys)})
    assert fgio.dumps(a) == fgio.dumps(b)


def test_long_vectors_are_written_several_numbers_a_line() -> None:
    text = fgio.dumps(pvector([0.5] * 1000))
    assert len(text.splitlines()) < 100 and max(map(len, text.splitlines())) <= 100


def test_save_returns_none_accepts_str_and_pathlike_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    tree = {"w": [1.0, 2.0], "m": Box(1.0, [2.0])}
    before = copy.deepcopy(tree)
    assert fgio.save(tree, tmp_path / "a.json") is None
    assert fgio.save(tree, str(tmp_path / "b.json")) is None
    assert tree == before
    assert fgio.load(str(tmp_path / "a.json")) == fgio.load(tmp_path / "b.json") == tree


def test_trees_nested_to_the_limit_round_trip_and_deeper_ones_are_refused() -> None:
    tree: Any = 1.0
    for _ in range(fgio.MAX_DEPTH):
        tree = {"k": tree} if isinstance(tree, list) else [tree]
    assert same(fgio.loads(fgio.dumps(tree)), tree)
    with pytest.raises(ValueError, match="nested deeper than 100"):
        fgio.dumps([tree])


def test_a_cyclic_list_is_refused_not_looped_over() -> None:
    cyclic: list[Any] = [1.0]
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="a cycle"):
        fgio.dumps(cyclic)


@pytest.mark.skipif(not hasattr(fg, "save"), reason="fgrad/__init__.py does not re-export fgrad.io yet")
def test_the_package_exports_save_and_load() -> None:
    assert fg.save is fgio.save and fg.load is fgio.load


# Atomic writes -----------------------------------------------------------------------------


def _old_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "params.json"
    fgio.save({"w": 1.0}, path)
    return path, path.read_bytes()


def test_a_crash_at_the_rename_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: Any) -> None:
    path, before = _old_file(tmp_path)

    def crash(*args: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        fgio.save({"w": 2.0}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_an_interrupt_mid_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: Any) -> None:
    path, before = _old_file(tmp_path)
    seen: list[bytes] = []

    def interrupted_fsync(fd: int) -> None:
        seen.append(path.read_bytes())  # mid-write, the old file is still whole at path
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        fgio.save({"w": 2.0}, path)
    assert seen == [before] and path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_a_failure_while_encoding_touches_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    path, before = _old_file(tmp_path)

    def broken_dumps(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(json, "dumps", broken_dumps)
    with pytest.raises(RuntimeError, match="encoder broke"):
        fgio.save({"w": 2.0}, path)
    monkeypatch.undo()
    with pytest.raises(TypeError):
        fgio.save({"w": "not a number"}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_a_successful_save_replaces_the_file_and_syncs(tmp_path: Path, monkeypatch: Any) -> None:
    path, _ = _old_file(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    fgio.save({"w": 2.0}, path)
    assert fgio.load(path) == {"w": 2.0}
    assert len(synced) == (2 if os.name == "posix" else 1)  # the file, then its directory
    assert [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_saving_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fgio.save({"w": 1.0}, tmp_path / "missing" / "p.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_files_get_permissions_from_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        fgio.save([1.0], tmp_path / "p.json")
    finally:
        os.umask(old)
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o640


# Refusing what cannot be saved --------------------------------------------------------------


@pytest.mark.parametrize(
    "tree, message",
    [
        ({"a": [1.0, "x"]}, "cannot save str 'x' at ['a'][1]: leaves must be float, int or bool"),
        ([object()], "cannot save object"),
        ({"a": 1 + 2j}, "cannot save complex (1+2j) at ['a']"),
        ({frozenset(): 1.0}, "dict key at [frozenset()] is frozenset"),
        (Box(1.0, 2.0, tag=["list"]), "static field at .tag is list"),
        (Box(1.0, 2.0, tag=lambda x: x), "static field at .tag is function"),
        (OrderedDict(a=1.0), "cannot save the OrderedDict at the root: subclasses"),
        ([Unregistered(1.0)], "Unregistered at [0] is not registered"),
        (pmap({"m": Box(1.0, {2.0})}), "cannot save set {2.0} at ['m'].b"),
        (namedtuple("Loose", "x")(1.0), "@fgrad.io.register"),
    ],
)
def test_save_refuses_what_it_cannot_load_back_naming_the_path(
    tmp_path: Path, tree: Any, message: str
) -> None:
    with pytest.raises(TypeError) as info:
        fgio.save(tree, tmp_path / "p.json")
    assert message in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_traced_nodes() -> None:
    def f(x: Any) -> Any:
        with pytest.raises(TypeError, match="leaves must be float, int or bool"):
            fgio.dumps({"x": x})
        return x * 2.0

    fg.grad(f)(1.0)


# Loading refuses bad, truncated and hostile files -------------------------------------------


def _sample_text() -> bytes:
    tree = {
        "model": MLP.init([2, 2, 1], seed=0),
        "specials": [math.nan, -0.0, math.inf, 5e-324],
        "box": Box(Pair(1, True), pmap({"k": None}), tag=("t", 1)),
    }
    return fgio.dumps(tree).encode()


def test_every_truncation_of_a_file_is_a_load_error_naming_the_file(tmp_path: Path) -> None:
    text = _sample_text()
    path = tmp_path / "cut.json"
    for k in range(0, len(text.rstrip()), 37):
        path.write_bytes(text[:k])
        with pytest.raises(LoadError) as info:
            fgio.load(path)
        assert str(path) in str(info.value) and ("line" in info.value.where)
    for k in range(len(text.rstrip())):
        with pytest.raises(LoadError):
            fgio.loads(text[:k])


@given(st.data())
def test_corrupted_files_load_or_raise_load_error_only(data: st.DataObject) -> None:
    text = bytearray(_sample_text())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "insert"]))
        byte = data.draw(st.sampled_from(list(b'{}[]",:0123456789.-eE tfnu\\\x00\xff')) | st.integers(0, 255))
        if action == "set":
            text[i] = byte
        elif action == "delete":
            del text[i]
        else:
            text.insert(i, byte)
    try:
        fgio.loads(bytes(text))
    except LoadError:
        pass


HOSTILE = {
    "os.system as a dataclass": (
        header('{"dataclass": {"type": "os:system", "fields": {"command": "echo pwned"}}}'),
        "the type 'os:system' is not registered",
    ),
    "eval as a namedtuple": (
        header('{"namedtuple": {"type": "builtins:eval", "fields": {"source": "1"}}}'),
        "'builtins:eval' is not registered",
    ),
    "__import__ as a type": (
        header('{"dataclass": {"type": "__import__", "fields": {}}}'),
        "'__import__' is not registered",
    ),
    "__import__ as a tag": (header('{"__import__": "os"}'), "the tag '__import__' is not one of"),
    "pickle opcodes": (b"\x80\x04\x95\x00cos\nsystem\n.", "not UTF-8"),
    "python literal": (header("[1.0, 2.0]"), "expected a number, null or a tagged object"),
    "a string leaf": (header('{"list": ["__import__(\'os\')"]}'), "strings are only keys and static fields"),
    "NaN literal": (header('{"list": [NaN]}'), 'NaN is not JSON; write {"float": "nan"}'),
    "Infinity literal": (header("-Infinity"), "-Infinity is not JSON"),
    "overflowing number": (header("1e999"), "'1e999' overflows a float"),
    "an int of 5000 digits": (header("1" * 5000), "not valid JSON"),
    "deep nesting": (header('{"list": [' * 100_000 + "]}" * 100_000), "while parsing"),
    "deep but parseable nesting": (header('{"list": [' * 150 + "]}" * 150), "deeper than max_depth=100"),
    "deep static tuples": (
        header('{"dict": [[' + '{"tuple": [' * 150 + "]}" * 150 + ", 1.0]]}"),
        "nested deeper than max_depth",
    ),
    "many keys in the header": (
        b'{"format": "fgrad-tree", "version": 1, "tree": null, '
        + b", ".join(b'"k%d": 0' % i for i in range(100_000))
        + b"}",
        "got a JSON array of 100003 items",
    ),
    "many keys in a tag": (
        header("{" + ", ".join(f'"list{i}": []' for i in range(100_000)) + "}"),
        "a JSON object of 100000 items",
    ),
    "a key repeated many times": (
        header('{"dict": [' + ", ".join('["k", 1.0]' for _ in range(100_000)) + "]}"),
        "the key 'k' appears twice",
    ),
    "a duplicate JSON key": (header('{"float": "nan", "float": "inf"}'), "has the key 'float' twice"),
    "keys that are equal numbers": (header('{"dict": [[1, 1.0], [1.0, 2.0]]}'), "appears twice"),
    "version 2": (b'{"format": "fgrad-tree", "version": 2, "tree": null}', "written by a newer fgrad"),
    "version as a string": (b'{"format": "fgrad-tree", "version": "1", "tree": null}', "version '1'"),
    "version missing": (b'{"format": "fgrad-tree", "tree": null}', "version None is not supported"),
    "another format": (b'{"format": "pickle", "version": 1, "tree": null}', "not an fgrad tree file"),
    "a top-level array": (b"[1.0]", "not an fgrad tree file"),
    "tree missing": (b'{"format": "fgrad-tree", "version": 1}', 'expected the keys "format"'),
    "empty": (b"", "the file is empty"),
    "whitespace": (b"  \n", "the file is empty"),
    "garbage after the document": (header("null") + " null", "Extra data"),
    "a bad float spelling": (header('{"float": "NaN"}'), 'expected "nan", "-nan"'),
    "a payload that is not a nan": (header('{"float": "nan:0x0000000000000000"}'), 'expected "nan"'),
    "a dict as a key": (header('{"dict": [[{"dict": []}, 1.0]]}'), "the tag 'dict' is not one of float"),
    "a list as a key": (header('{"dict": [[[1], 1.0]]}'), "expected a number, null or a tagged object"),
    "a pair of three": (header('{"dict": [["a", 1.0, 2.0]]}'), "expected a [key, value] pair"),
    "a dict body that is an object": (header('{"dict": {"a": 1.0}}'), "expected a JSON array"),
    "a list body that is a number": (header('{"list": 3}'), "expected a JSON array, got 3"),
    "missing fields": (
        header('{"dataclass": {"type": "fgrad.nn:Neuron", "fields": {"w": {"pvector": []}}}}'),
        "expected the fields ['w', 'b'] of the registered class",
    ),
    "extra fields": (
        header('{"namedtuple": {"type": "fgrad.nn:Neuron", "fields": {}}}'),
        "fgrad.nn:Neuron is registered, but is not a namedtuple",
    ),
    "unknown record keys": (
        header('{"dataclass": {"type": "fgrad.nn:MLP", "fields": {}, "code": "x"}}'),
        'expected {"type": ..., "fields": {...}}',
    ),
    "a type name that is not a string": (
        header('{"dataclass": {"type": ["os", "system"], "fields": {}}}'),
        "the type ['os', 'system'] is not registered",
    ),
    "a static field holding a container": (
        header(
            '{"dataclass": {"type": "fgrad.nn:MLP", "fields": {"layers": {"pvector": []}}, '
            '"static": {"style": {"list": []}}}}'
        ),
        "the tag 'list' is not one of float, tuple",
    ),
}


@pytest.mark.parametrize("payload, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_bad_and_hostile_files_raise_a_clear_load_error(
    tmp_path: Path, payload: str | bytes, message: str
) -> None:
    path = tmp_path / "hostile.json"
    path.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
    with pytest.raises(LoadError) as info:
        fgio.load(path)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value), str(info.value)
    assert str(path) in str(info.value) and len(str(info.value)) < 400


def test_syntax_errors_give_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "format": "fgrad-tree",\n  "version": 1\n  "tree": null\n}\n')
    with pytest.raises(LoadError) as info:
        fgio.load(path)
    assert info.value.where == "line 4, column 3" and "Expecting ',' delimiter" in info.value.reason


def test_structure_errors_give_the_json_path() -> None:
    with pytest.raises(LoadError) as info:
        fgio.loads(header('{"dict": [["w", {"list": [1.0, "x"]}]]}'), source="p.json")
    assert info.value.where == "at $.tree.dict[0][1].list[1]"
    assert str(info.value).startswith("cannot load p.json: at $.tree.dict[0][1].list[1]: expected")
    assert "got 'x'; strings are only keys and static fields" in info.value.reason


def test_loading_runs_no_code_of_the_classes_it_builds(tmp_path: Path) -> None:
    obj = object.__new__(Sentinel)
    object.__setattr__(obj, "w", 2.0)
    object.__setattr__(obj, "name", "s")
    CALLS.clear()
    text = fgio.dumps({"s": obj})
    loaded = fgio.loads(text)
    assert type(loaded["s"]) is Sentinel and loaded["s"].w == 2.0 and loaded["s"].name == "s"
    for hostile in ['{"dict": [["s", 1.0]]}', '{"float": "bogus"}', '{"list": []}']:
        with pytest.raises(LoadError):
            fgio.loads(text.replace('"name": "s"', f'"name": {hostile}'))
    assert CALLS == []


def test_loading_imports_nothing() -> None:
    assert "antigravity" not in sys.modules
    good = fgio.dumps({"m": MLP.init([2, 1]), "x": [from_bits(0x7FF8000000000001), Pair(1.0, 2.0)]})
    bad = header('{"dataclass": {"type": "antigravity:fly", "fields": {}}}')
    imported: list[str] = []
    real_import = builtins.__import__

    def recording_import(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    def load_watched(text: str) -> Any:
        builtins.__import__ = recording_import
        try:
            return fgio.loads(text)
        except LoadError as e:
            return e
        finally:
            builtins.__import__ = real_import

    assert type(load_watched(good)["m"]) is MLP
    assert "register" in str(load_watched(bad))
    assert imported == [] and "antigravity" not in sys.modules


def test_the_loader_source_uses_no_eval_pickle_or_import_machinery() -> None:
    source = Path(fgio.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"eval", "exec", "compile", "__import__", "import_module", "loads_pickle", "Unpickler"}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "importlib", "subprocess", "yaml", "ast"}


IO_FILES = sorted(Path(fgio.__file__).parent.glob("*.py"))


def test_the_io_package_is_what_is_checked() -> None:
    assert {p.stem for p in IO_FILES} >= {"__init__", "read", "registry", "write"}
    assert Path(ioread.__file__) in IO_FILES


@pytest.mark.parametrize("path", IO_FILES, ids=lambda p: p.name)
def test_the_io_modules_use_no_eval_pickle_or_import_machinery(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"eval", "exec", "compile", "__import__", "import_module", "Unpickler", "setattr"}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "importlib", "subprocess", "yaml", "ast"}


def test_load_error_keeps_its_public_name() -> None:
    assert LoadError.__module__ == "fgrad.io" and fgio.LoadError is ioread.LoadError
    assert type(pickle.loads(pickle.dumps(LoadError("p", "w", "r")))) is LoadError


def test_an_unregistered_type_says_how_to_register_it() -> None:
    with pytest.raises(LoadError) as info:
        fgio.loads(header('{"dataclass": {"type": "mymodels:Net", "fields": {"w": 1.0}}}'))
    assert "fgrad.io.register" in str(info.value) and "mymodels:Net" in str(info.value)


def test_load_limits_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    fgio.save([0.5] * 1000, path)
    with pytest.raises(LoadError, match="larger than max_bytes=100"):
        fgio.load(path, max_bytes=100)
    assert fgio.load(path, max_bytes=None) == [0.5] * 1000


def test_load_limits_the_depth() -> None:
    text = fgio.dumps([[[1.0]]])
    assert fgio.loads(text, max_depth=3) == [[[1.0]]]
    with pytest.raises(LoadError, match="max_depth=2"):
        fgio.loads(text, max_depth=2)


def test_a_missing_file_is_an_os_error_not_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fgio.load(tmp_path / "nope.json")


def test_a_byte_order_mark_and_non_ascii_keys_are_fine() -> None:
    text = fgio.dumps({"θ": 1.0})
    assert text.isascii()
    assert fgio.loads(b"\xef\xbb\xbf" + text.encode()) == {"θ": 1.0}


def test_load_error_is_a_value_error_that_pickles() -> None:
    error = LoadError("p.json", "line 1, column 2", "bad")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, ValueError) and again.where == "line 1, column 2"
    assert str(again) == str(error) == "cannot load p.json: line 1, column 2: bad"


# The registry ------------------------------------------------------------------------------


def test_fgrad_nn_classes_are_registered_by_default() -> None:
    text = fgio.dumps(Neuron(pvector([1.0]), 0.0))
    assert '"type": "fgrad.nn:Neuron"' in text


def test_register_refuses_what_it_cannot_rebuild() -> None:
    with pytest.raises(TypeError, match="expected a dataclass or namedtuple class"):
        fgio.register(dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a dataclass or namedtuple class"):
        fgio.register(Box(1.0, 2.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is taken by"):
        fgio.register(Unregistered, name="fgrad.nn:MLP")


def test_a_redefined_class_takes_its_name_over() -> None:
    def define() -> type:
        @dataclass(frozen=True)
        class Redefined:
            w: float

        return Redefined

    first, second = define(), define()
    fgio.register(first)
    fgio.register(second)
    assert type(fgio.loads(fgio.dumps(first(1.0)))) is second


def test_an_alias_keeps_old_files_loadable() -> None:
    @dataclass(frozen=True)
    class Renamed:
        w: float

    fgio.register(Renamed, name="old.module:Renamed")
    fgio.register(Renamed)
    assert '"old.module:Renamed"' in fgio.dumps(Renamed(1.0))
    new_name = f"{Renamed.__module__}:{Renamed.__qualname__}"
    text = header(f'{{"dataclass": {{"type": "{new_name}", "fields": {{"w": 1.0}}}}}}')
    assert fgio.loads(text) == Renamed(1.0)


# Saving as open() would: through links, keeping the file's permissions -----------------------

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX links, permissions and owners")


@posix
def test_saving_to_a_symlink_writes_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "params.json"
    fgio.save({"w": 1.0}, target)
    (tmp_path / "hop.json").symlink_to("real/params.json")
    (tmp_path / "link.json").symlink_to("hop.json")  # a chain, into another directory
    fgio.save({"w": 2.0}, tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "hop.json").is_symlink()
    assert fgio.load(target) == {"w": 2.0} == fgio.load(tmp_path / "link.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hop.json", "link.json", "real"]
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["params.json"]


@posix
def test_a_dangling_symlink_gets_its_target_created(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to("sub/params.json")
    with pytest.raises(FileNotFoundError) as info:  # as open() would: the directory is missing
        fgio.save([1.0], link)
    assert info.value.filename == str(tmp_path / "sub" / "params.json")
    (tmp_path / "sub").mkdir()
    fgio.save([1.0], link)
    assert link.is_symlink() and fgio.load(tmp_path / "sub" / "params.json") == [1.0]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["params.json"]


@posix
def test_a_loop_of_symlinks_is_an_os_error_and_stays(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match="symbolic links"):
        fgio.save([1.0], tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"] and (tmp_path / "a").is_symlink()


@posix
@pytest.mark.parametrize("mode, umask", [(0o600, 0o022), (0o640, 0o077), (0o666, 0o022), (0o400, 0o022)])
def test_saving_over_a_file_keeps_its_permission_bits(tmp_path: Path, mode: int, umask: int) -> None:
    path = tmp_path / "p.json"
    fgio.save([1.0], path)
    path.chmod(mode)
    (tmp_path / "link.json").symlink_to("p.json")
    old = os.umask(umask)
    try:
        fgio.save([2.0], path)
        assert path.stat().st_mode & 0o7777 == mode
        fgio.save([3.0], tmp_path / "link.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o7777 == mode and fgio.load(path) == [3.0]


@posix
def test_saving_over_a_setuid_file_does_not_pass_the_bit_on(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    fgio.save([1.0], path)
    path.chmod(0o4750)
    fgio.save([2.0], path)
    assert path.stat().st_mode & 0o7777 == 0o750


@posix
def test_a_file_system_without_modes_does_not_stop_the_save(tmp_path: Path, monkeypatch: Any) -> None:
    path, _ = _old_file(tmp_path)

    def no_modes(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")  # what vfat answers

    monkeypatch.setattr(os, "fchmod", no_modes)
    fgio.save({"w": 2.0}, path)
    assert fgio.load(path) == {"w": 2.0} and [p.name for p in tmp_path.iterdir()] == ["params.json"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_saving_over_a_file_keeps_its_owner_where_allowed(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    fgio.save([1.0], path)
    os.chown(path, 4321, 1234)
    fgio.save([2.0], path)
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 1234) and fgio.load(path) == [2.0]


@posix
def test_a_file_you_cannot_write_is_left_alone(tmp_path: Path, monkeypatch: Any) -> None:
    path, before = _old_file(tmp_path)
    path.chmod(0o444)
    if os.geteuid() == 0:  # root may write anything, so pretend to be someone else
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **kw: m != os.W_OK and real_access(p, m, **kw))
    with pytest.raises(PermissionError, match="not writable, so it is left alone") as info:
        fgio.save({"w": 2.0}, path)
    assert info.value.filename == str(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["params.json"]


def test_an_unwritable_directory_names_the_file_asked_for(tmp_path: Path, monkeypatch: Any) -> None:
    real_open = os.open

    def no_new_files(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_new_files)
    with pytest.raises(PermissionError, match="save makes a file in its directory") as info:
        fgio.save([1.0], tmp_path / "p.json")
    assert info.value.filename == str(tmp_path / "p.json")


def test_a_long_file_name_is_not_made_too_long_by_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 245 + ".json")  # 250 bytes: within any NAME_MAX
    fgio.save([1.0], path)
    assert fgio.load(path) == [1.0] and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "path, error, message",
    [
        (None, TypeError, "save: path must be a file name (a str or os.PathLike), got NoneType None"),
        (3, TypeError, "got int 3"),
        (["p.json"], TypeError, "got list ['p.json']"),
        ("", ValueError, "save: path is empty"),
        ("p\0.json", ValueError, "holds a NUL character"),
        ("sub" + os.sep, IsADirectoryError, "ends in a separator, so it names a directory"),
        (".", IsADirectoryError, "save: path is a directory; name a file in it"),
    ],
)
def test_save_refuses_bad_paths_clearly(
    tmp_path: Path, monkeypatch: Any, path: Any, error: type, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as info:
        fgio.save([1.0], path)
    assert message in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [None, 3, b"", ""])
def test_load_refuses_bad_paths_clearly(path: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="load: path"):
        fgio.load(path)


# Bad arguments to load and loads -------------------------------------------------------------


@pytest.mark.parametrize("data", [None, 3, 1.5, ["{}"], Path("p.json")], ids=repr)
def test_loads_refuses_what_is_not_text_naming_data(data: Any) -> None:
    with pytest.raises(TypeError, match="loads: data must be the text of a file, a str or bytes") as info:
        fgio.loads(data)
    assert ("fgrad.io.load(path)" in str(info.value)) == isinstance(data, Path)


def test_loads_takes_any_bytes_like_text() -> None:
    text = fgio.dumps({"w": [1.0, -0.0]}).encode()
    for data in (text, bytearray(text), memoryview(text)):
        assert same(fgio.loads(data), {"w": [1.0, -0.0]})


def test_loads_source_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="loads: source must be a str"):
        fgio.loads(fgio.dumps(1.0), source=3)  # type: ignore[arg-type]


BAD_LIMITS = [
    ("a", TypeError, "must be an int >= 0"),
    (True, TypeError, "got bool True"),
    (1.5, TypeError, "got float 1.5"),
    (math.nan, TypeError, "got float nan"),
    (-1, ValueError, "must be an int >= 0"),
]


@pytest.mark.parametrize("value, error, message", [*BAD_LIMITS, (None, TypeError, "got NoneType None")])
def test_max_depth_must_be_an_int_at_least_zero(
    tmp_path: Path, value: Any, error: type, message: str
) -> None:
    path = tmp_path / "p.json"
    fgio.save([1.0], path)
    with pytest.raises(error, match=f"load: max_depth {message}" if "must" in message else message):
        fgio.load(path, max_depth=value)
    with pytest.raises(error, match="loads: max_depth") as info:
        fgio.loads(path.read_text(), max_depth=value)
    assert message in str(info.value)


@pytest.mark.parametrize("value, error, message", BAD_LIMITS)
def test_max_bytes_must_be_an_int_at_least_zero_or_none(
    tmp_path: Path, value: Any, error: type, message: str
) -> None:
    path = tmp_path / "p.json"
    fgio.save([1.0], path)
    with pytest.raises(error, match="load: max_bytes must be an int >= 0 or None") as info:
        fgio.load(path, max_bytes=value)
    assert message in str(info.value)


def test_limits_at_zero_and_beyond_any_file_work(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    fgio.save(1.0, path)
    assert fgio.load(path, max_depth=0) == 1.0
    assert fgio.load(path, max_bytes=10**30, max_depth=10**30) == 1.0  # no OverflowError, no MemoryError
    assert fgio.load(path, max_bytes=2**62) == 1.0
    with pytest.raises(LoadError, match="larger than max_bytes=0"):
        fgio.load(path, max_bytes=0)


# The registry refuses what it could never load -----------------------------------------------


@pytest.mark.parametrize(
    "name, error, message",
    [
        (3, TypeError, "register: name must be a str (the class's name in files), got int 3"),
        (b"x:Y", TypeError, "got bytes b'x:Y'"),
        (("x", "Y"), TypeError, "got tuple ('x', 'Y')"),
        ("", ValueError, "register: name must not be empty or blank"),
        ("   ", ValueError, "register: name must not be empty or blank"),
    ],
)
def test_register_refuses_a_name_no_file_could_hold(name: Any, error: type, message: str) -> None:
    @dataclass(frozen=True)
    class Named:
        w: float

    with pytest.raises(error) as info:
        fgio.register(Named, name=name)
    assert message in str(info.value) and "test_io:" in str(info.value)  # the default is suggested
    with pytest.raises(TypeError, match="is not registered"):
        fgio.dumps(Named(1.0))  # nothing was registered


def test_a_str_subclass_name_is_stored_as_a_plain_str() -> None:
    class Shouty(str):
        def __eq__(self, other: object) -> bool:
            raise AssertionError("a method of the name ran")

        __hash__ = str.__hash__

    @dataclass(frozen=True)
    class Named:
        w: float

    fgio.register(Named, name=Shouty("shouty:Named"))
    assert fgio.loads(fgio.dumps(Named(1.0))) == Named(1.0)


def test_register_refuses_a_hand_made_namedtuple_it_could_not_rebuild() -> None:
    class NotStr(tuple):  # type: ignore[type-arg]
        _fields = ("x", 1)

    class Twice(tuple):  # type: ignore[type-arg]
        _fields = ("x", "x")

    class NotTuple(tuple):  # type: ignore[type-arg]
        _fields = "xy"

    for cls in (NotStr, Twice, NotTuple):
        with pytest.raises(TypeError, match=r"_fields must be a tuple of distinct str field names"):
            fgio.register(cls)


# Error messages survive whatever the user's objects do ----------------------------------------


class Hostile:
    """Every method an error message or a sort might call raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr ran")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq ran")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt ran")

    def __hash__(self) -> int:
        return 7


class HostileMeta(type):
    def __repr__(cls) -> str:
        raise RuntimeError("repr ran")


class HostileClass(metaclass=HostileMeta):
    pass


@pytest.mark.parametrize(
    "make, message",  # made in the test: pytest itself would compare Hostile parameters
    [
        (lambda: {Hostile(): 1.0}, "the dict key at [<a Hostile whose repr fails>] is Hostile"),
        (lambda: {Hostile(): "x", "a": 1.0}, "the dict key at [<a Hostile whose repr fails>]"),
        (lambda: pmap({Hostile(): 1.0, "a": 2.0, 3: 4.0}), "the dict key at [<a Hostile whose repr fails>]"),
        (lambda: [Hostile()], "cannot save Hostile <a Hostile whose repr fails> at [0]"),
        (lambda: {"k": [Hostile()]}, "at ['k'][0]"),
        (lambda: Box(1.0, 2.0, tag=Hostile()), "the static field at .tag is Hostile <a Hostile whose repr"),
        (lambda: {(1, Hostile()): 1.0}, "the dict key at [<a tuple whose repr fails>][1] is Hostile"),
        (lambda: {"x" * 10**6: object()}, "at ['xxxxxxxx"),
    ],
)
def test_error_messages_survive_objects_whose_repr_or_comparison_fails(make: Any, message: str) -> None:
    with pytest.raises(TypeError) as info:
        fgio.dumps(make())
    assert message in str(info.value) and len(str(info.value)) < 400


def test_register_messages_survive_objects_whose_repr_fails() -> None:
    with pytest.raises(TypeError, match="got <a Hostile whose repr fails>"):
        fgio.register(Hostile())  # type: ignore[type-var]
    with pytest.raises(TypeError, match="got <a HostileMeta whose repr fails>"):
        fgio.register(HostileClass)


# Long ints, subclasses of numbers, records built by hand ---------------------------------------


class IntLike(int):
    def __int__(self) -> int:
        raise RuntimeError("__int__ ran")

    def __index__(self) -> int:
        raise RuntimeError("__index__ ran")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ ran")


class FloatLike(float):
    def __float__(self) -> float:
        raise RuntimeError("__float__ ran")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ ran")


def test_ints_of_up_to_4300_digits_round_trip_everywhere() -> None:
    big, edge = 10**400, 10**4300 - 1
    tree = {
        big: [-big, edge, -edge],
        (big, "k"): Box(big, 2.0, tag=(edge, -big)),
        "p": pmap({big: 1.0, "a": 2}),
    }
    assert same(fgio.loads(fgio.dumps(tree)), tree)


@pytest.mark.parametrize(
    "tree, where",
    [
        ([10**4300], "the int at [0]"),
        ({"w": -(10**5000)}, "the int at ['w']"),
        ({10**5000: 1.0}, "the dict key at [an int of 16610 bits]"),
        (pmap({10**5000: 1.0, "a": 2.0}), "the dict key at [an int of 16610 bits]"),
        ({(1, 10**5000): 1.0}, "the dict key at [<a tuple whose repr fails>][1]"),
        ({10**5000: [1.0, "x"]}, "the dict key at [an int of 16610 bits]"),
        (Box(1.0, 2.0, tag=10**5000), "the static field at .tag"),
        ([Pair(1.0, IntLike(10**4300))], "the int at [0].second"),
    ],
)
def test_longer_ints_are_refused_clearly(tmp_path: Path, tree: Any, where: str) -> None:
    with pytest.raises(ValueError) as info:
        fgio.save(tree, tmp_path / "p.json")
    assert f"save: {where} has more than 4300 digits" in str(info.value)
    assert "convert it" in str(info.value) and len(str(info.value)) < 400
    assert list(tmp_path.iterdir()) == []


def test_number_subclasses_are_saved_as_the_numbers_they_are_running_none_of_their_code() -> None:
    import enum

    class Size(enum.IntEnum):
        SMALL = 3

    tree = [IntLike(5), FloatLike(-0.0), FloatLike(math.nan), Size.SMALL]
    assert same(fgio.loads(fgio.dumps(tree)), [5, -0.0, math.nan, 3])


def test_records_built_without_their_constructor_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match=r"the Box at \[0\] has no value for its field 'w'"):
        fgio.dumps([object.__new__(Box)])
    with pytest.raises(TypeError, match=r"the Pair at \['p'\] holds 1 values for its 2 fields"):
        fgio.dumps({"p": tuple.__new__(Pair, (1.0,))})


def test_register_refuses_dataclasses_load_could_not_rebuild() -> None:
    import abc

    @dataclass(frozen=True)
    class DictLike(dict):  # type: ignore[type-arg]
        w: float = 1.0

    @dataclass(frozen=True)
    class Failure(Exception):
        w: float = 1.0

    @dataclass(frozen=True)
    class Abstract(abc.ABC):
        w: float

        @abc.abstractmethod
        def f(self) -> None: ...

    for cls in (DictLike, Failure, Abstract):
        with pytest.raises(TypeError, match="load could not rebuild a .* without calling its constructor"):
            fgio.register(cls)
    for instance in (DictLike(2.0), Failure(2.0)):  # saved, they would have failed to load
        with pytest.raises(TypeError, match="is not registered"):
            fgio.dumps(instance)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_saving_over_a_fifo_is_refused_and_leaves_it(tmp_path: Any) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file .*FIFO"):
        fg.save({"w": 1.0}, fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
