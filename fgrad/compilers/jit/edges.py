"""What crosses the edges of a jit trace: the traced arguments' leaves going
in (numbers as floats, 1-D float64 numpy arrays as :class:`TracedArray`, the
rest refused with a reason), the outputs coming out (never a node hidden in
an object), and readable paths for the messages.
"""

from __future__ import annotations

import gc
import numbers
import operator
import types
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from fgrad.compilers.jit.keys import check_hashable, unhashable
from fgrad.engine.core import EscapedNodeError, Expr, Primitive, _is_array, bind
from fgrad.engine.tree import TreeDef, tree_paths
from fgrad.transforms.edges import lower

__all__ = ["TracedArray", "as_floats", "check_outputs", "leaf_path", "unhashable_field"]


class TracedArray:
    """A 1-D float64 numpy array argument as a jitted function sees it: a
    sequence of its examples as traced values.

    ``len(xs)``, ``xs[i]``, iteration, ``shape``, ``ndim``, ``size``,
    ``dtype`` and ``fg.vmap`` (which maps over it) work, and the compiled
    code reads the array given at each call: one path serves every array of
    that length and dtype. Whole-array operations (``xs * 2``,
    ``np.sum(xs)``) are refused: they would run once, while tracing, and be
    frozen into the compiled code.
    """

    __slots__ = ("node", "where", "shape", "ndim", "size", "dtype")
    __hash__ = None  # type: ignore[assignment]
    __fgrad_batch__ = True  # fg.vmap maps over ``node``, a batch: the whole array as one leaf

    def __init__(self, node: Expr, where: str) -> None:
        self.node, self.where = node, where
        self.shape, self.ndim, self.size, self.dtype = node.value.shape, 1, len(node.value), node.value.dtype

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, bool) or not hasattr(type(i), "__index__"):
            self._refuse(f"indexing by a {type(i).__name__}")
        k = operator.index(i)
        if not -self.size <= k < self.size:
            raise IndexError(f"index {k} is out of bounds for {self.where}, an array of {self.size} examples")
        return bind(_element, self.node, k % self.size)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.size))

    def __repr__(self) -> str:
        return f"TracedArray({self.where}: {self.size} examples)"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(self._message(f".{name}"))

    def _refuse(self, what: str) -> NoReturn:
        raise TypeError(self._message(what))

    def _message(self, what: str) -> str:
        return (
            f"jit: {self.where} is a numpy array, which a jitted function sees as a sequence of its "
            f"{self.size} examples (traced, so that one compiled path serves every array of that "
            f"size): len(), indexing by int, iteration, shape and fg.vmap work on it, {what} does not. "
            "Map over it with fg.vmap, close over the array instead (constant data of the compiled "
            "code), or call the function without jit"
        )


def _element_impl(xs: Any, i: int) -> float:
    return float(xs[i])


# xs[i] of a TracedArray. The array is data, never an input of a transform
# inside jit (they only meet it as a constant), so the op has no derivative
# rules: were one ever needed, the transform would say so.
_element = Primitive(
    "element",
    impl=_element_impl,
    doc="``element(xs, i)``: entry ``i`` of a TracedArray, as a float. Data: it has no derivative rules.",
)


def _refusal(what: str) -> Callable[..., NoReturn]:
    def refuse(self: TracedArray, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse(what)

    return refuse


for _name, _what in [
    *(
        (f"__{op}__", "arithmetic")
        for op in (
            "add",
            "radd",
            "sub",
            "rsub",
            "mul",
            "rmul",
            "truediv",
            "rtruediv",
            "floordiv",
            "rfloordiv",
            "mod",
            "rmod",
            "pow",
            "rpow",
            "matmul",
            "rmatmul",
            "neg",
            "pos",
            "abs",
        )
    ),
    *((f"__{op}__", "comparison") for op in ("lt", "le", "gt", "ge", "eq", "ne")),
    ("__bool__", "a truth test"),
    ("__float__", "float()"),
    ("__int__", "int()"),
    ("__array__", "conversion to a numpy array"),
    ("__array_ufunc__", "a numpy function"),
    ("__array_function__", "a numpy function"),
]:
    setattr(TracedArray, _name, _refusal(_what))


# Arguments --------------------------------------------------------------------------------


def as_floats(
    leaves: list[Any], td: TreeDef, static: tuple[int, ...]
) -> tuple[list[Any], tuple[tuple[int, int, str], ...]]:
    """Traced leaves as floats, so one compiled path serves ints and floats
    alike (and its simplifications, such as x * 1.0 -> x, keep the type eager
    float arithmetic gives); and the positions, sizes and dtypes (byte order)
    of 1-D float64 numpy arrays, which are passed as they are."""
    out = []
    arrays = []
    for k, x in enumerate(leaves):
        t = type(x)
        if t is float:
            out.append(x)
        elif t is not bool and isinstance(x, numbers.Real):
            try:
                out.append(float(x))
            except OverflowError:
                size = f"an int of {x.bit_length()} bits" if isinstance(x, int) else f"a {t.__name__}"
                raise ValueError(
                    f"jit: the traced argument leaf at {leaf_path(td, k, static)} is {size}, too large "
                    "for a float; jit traces numbers as floats: pass a float (float('inf') if that is "
                    "what you mean), or mark the argument static with static_argnums"
                ) from None
        elif _is_array(x):
            if x.ndim != 1 or x.dtype.kind != "f" or x.dtype.itemsize != 8:
                raise TypeError(
                    f"jit: the traced argument leaf at {leaf_path(td, k, static)} is a numpy array of "
                    f"shape {x.shape} and dtype {x.dtype}; jit takes 1-D float64 arrays (a sequence of "
                    "examples, for fg.vmap) and real numbers: convert it (x.astype(float), or x.tolist() "
                    "for nested lists of numbers), or close over it in the function (constant data)"
                )
            out.append(x)
            arrays.append((k, len(x), x.dtype.str))
        elif t is Expr:  # no transform is active here, so its trace has returned
            raise EscapedNodeError(
                f"jit: the traced argument leaf at {leaf_path(td, k, static)} is a node of "
                f"{x.trace.name}, which has returned; pass its value (float(x)), or call jit inside "
                "that transform"
            )
        else:
            raise TypeError(
                f"jit: the traced argument leaf at {leaf_path(td, k, static)} is a {t.__name__}; jit "
                "traces real numbers (and 1-D float64 numpy arrays) only. Mark the argument static "
                "with static_argnums (it is then hashed into the cache key)"
            )
    return out, tuple(arrays)


def _labels(td: TreeDef) -> list[str]:
    if td.kind == "map":
        return [f"[{k!r}]" for k in td.meta]
    if td.kind == "dataclass":
        return [f".{n}" for n in td.meta[0]]
    if td.kind == "namedtuple":
        return [f".{n}" for n in td.node_type._fields]
    return [f"[{i}]" for i in range(len(td.children))]


def arg_path(path: str, static: tuple[int, ...]) -> str:
    """A path in the tuple of traced arguments as a path in the call's
    arguments: ``[j]...`` names the j-th traced one, not the j-th argument."""
    if not static or not path.startswith("["):
        return path
    j = int(path[1 : path.index("]")])
    traced = [i for i in range(j + len(static) + 1) if i not in static]
    return f"[{traced[j]}]{path[path.index(']') + 1 :]}"


def leaf_path(td: TreeDef, k: int, static: tuple[int, ...]) -> str:
    return arg_path(tree_paths(td)[k], static)


def unhashable_field(td: TreeDef, static: tuple[int, ...], error: Exception) -> TypeError:
    """The error for a TreeDef that cannot be keyed, naming the static field
    (and its path) that cannot be hashed."""
    stack: list[tuple[TreeDef, str]] = [(td, "")]
    while stack:
        t, path = stack.pop()
        if t.kind == "dataclass":
            for name, v in zip(t.meta[1], t.meta[2]):
                check_hashable(
                    v, f"the static field {name!r} at {arg_path(path, static)}", "static fields key the cache"
                )
        stack.extend((c, path + lab) for c, lab in zip(t.children, _labels(t)))
    return unhashable("a dict key or static field of the traced arguments", "they key the cache", error)


# Outputs ----------------------------------------------------------------------------------

_PLAIN = frozenset({float, int, str, bool, bytes, complex, type(None)})
_CODE = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


def check_outputs(outs: list[Any], out_td: TreeDef, tr: Any) -> None:
    """Refuse outputs that would carry a node out of the trace, or that a
    cached path cannot return again (it returns the same object each call)."""
    paths: list[str] | None = None
    for k, o in enumerate(outs):
        t = type(o)
        if t in _PLAIN or (t is Expr and o.trace is tr):
            continue
        if t is Expr:
            lower(tr, o)  # raises for a node of a transform that has returned
        if paths is None:
            paths = tree_paths(out_td)
        where = f"the output at {paths[k]}" if paths[k] else "the output"
        if isinstance(o, _CODE):
            raise TypeError(
                f"jit: {where} is a {t.__name__}; jit returns a function's non-pytree outputs as they "
                f"are, the same object on every call, and a {t.__name__} runs only once: return its "
                "values in a tuple or list instead (e.g. tuple(...))"
            )
        if t is Expr or _holds_node(o):
            raise EscapedNodeError(
                f"jit: {where} is a {t.__name__} holding a traced value (a node); traced values leave a "
                "jitted function only as pytree leaves (numbers in tuples, lists, dicts, dataclasses): "
                f"return them in such a container instead of inside a {t.__name__}"
            )


def _holds_node(obj: Any, budget: int = 100_000) -> bool:
    """Whether a node is reachable from ``obj`` (a bounded search of what it
    refers to, not through modules, classes or functions' globals)."""
    seen: set[int] = set()
    todo = [obj]
    while todo and budget > 0:
        x = todo.pop()
        budget -= 1
        if type(x) is Expr:
            return True
        if id(x) in seen or type(x) in _PLAIN or isinstance(x, (type, types.ModuleType, types.CodeType)):
            continue
        seen.add(id(x))
        if isinstance(x, types.FunctionType):
            todo.extend(x.__closure__ or ())  # its cells, whose referents are their contents
            todo.extend((x.__defaults__, x.__kwdefaults__))
        else:
            todo.extend(gc.get_referents(x))
    return False
