"""``vmap(f, chunk_size=N)``: a batch run N examples at a time.

Under jit (and the transforms inside it: grad, jvp, ...), a chunked vmap is
ONE node of the graph,
``chunked_map(body, n, N, *shared, *columns)``: ``shared`` are the leaves
shared by all examples (the model), ``columns`` the batched leaves (one
array of ``n`` values each: the data). Its impl runs ``body`` compiled with
jit on each chunk of ``N`` examples in turn (vmap's numpy backend), so no
value of more than one chunk is ever held but the outputs. Its value packs
the outputs in one array: per-example outputs (``n`` values each), then
totals (sums over all examples, in chunk order); ``chunk_part`` and
``chunk_item`` read them.

Its rules are chunked maps too, of bodies made from ``body`` by fgrad's own
transforms: the reverse rule maps the body's vector-Jacobian product
(recomputing each chunk's forward values: remat), which gives per-example
cotangents for the columns and, summed over the examples, for the shared
leaves; the forward rule maps the body's Jacobian-vector product. So
derivatives of any order, in either mode, stay chunked.

The compiler (``fgrad.compilers.jit``) installs ``compile_hook``: this layer
only knows that a body can be compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fgrad.engine.core import Expr, Primitive, Unbatchable, _bind_values, _is_array, _peel, make_node
from fgrad.engine.trace import Trace, _active, protected, traced
from fgrad.transforms.batching import TRUSTED, numpy_module
from fgrad.transforms.edges import lower
from fgrad.transforms.graph import backward, forward

__all__ = ["Body", "map_p", "part_p", "item_p", "pad_p", "primal_of", "chunked", "compile_hook"]

# jit, installed by fgrad.compilers.jit: compile_hook(fun) is a compiled fun.
compile_hook: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None


class NotBatched(Unbatchable):
    """The body needs one example at a time (vmap's loop runs instead)."""


class Body:
    """A function of one chunk: ``fun(shared, columns) -> (per_example, totals)``.

    ``shared`` holds the shared leaves, ``columns`` one batched leaf per
    column (a node whose value is an array of the chunk's examples); it
    returns per-example outputs (batches, or traced values the same for
    every example) and totals (sums over the chunk's examples). It may not
    branch on a traced value (jit would guard the branch in the chunk's own
    program, out of sight of the program that runs the chunks).
    ``data[i]`` says column ``i`` is a constant of every transform (no
    cotangent is computed for it). ``n_out``/``n_totals`` are learnt when
    it is first compiled.
    """

    __slots__ = ("fun", "n_shared", "data", "name", "n_out", "n_totals", "runners", "derived", "primal")

    def __init__(
        self,
        fun: Callable[[list[Any], list[Any]], tuple[list[Any], list[Any]]],
        n_shared: int,
        data: tuple[bool, ...],
        name: str,
    ) -> None:
        self.fun = fun
        self.n_shared = n_shared
        self.data = data
        self.name = name
        self.n_out: int | None = None
        self.n_totals: int | None = None
        self.runners: dict[int, Callable[..., Any]] = {}
        self.derived: dict[Any, Body] = {}  # its vjp and jvp bodies, made once
        self.primal: Body | None = None  # for a vjp body: the body it differentiates

    def __repr__(self) -> str:
        return f"<chunk body {self.name}>"

    def runner(self, length: int) -> Callable[..., Any]:
        """The body compiled for chunks of ``length`` examples."""
        run = self.runners.get(length)
        if run is None:
            assert compile_hook is not None, "fgrad.compilers.jit installs the compiler"
            run = self.runners[length] = compile_hook(self._flat)
        return run

    def _flat(self, shared: tuple[Any, ...], *columns: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        nodes = [getattr(c, "node", None) for c in columns]
        if any(x is None for x in nodes):  # (jit calls it eagerly under fg.debug_nans)
            raise RuntimeError(
                "a chunked vmap traced before fg.debug_nans() was switched on cannot run under it; "
                "call the function again inside debug_nans (it then runs vmap's loop)"
            )
        per, totals = self.fun(list(shared), nodes)
        if _active.get()[0].guards:
            # A branch on a shared value: the compiled program would take this
            # chunk's path whatever the values of later calls.
            raise NotBatched
        if self.n_out is None:  # (vmap checks that f's outputs keep their structure)
            self.n_out, self.n_totals = len(per), len(totals)
        return tuple(per), tuple(totals)

    def run_chunk(self, shared: tuple[Any, ...], columns: list[Any], a: int, b: int) -> Any:
        return _outside(lambda: self.runner(b - a)(shared, *[c[a:b] for c in columns]))


def _outside(body: Callable[[], Any]) -> Any:
    """``body()`` with no trace active: a chunk runs as its own compiled call.
    The traces open outside take no nodes meanwhile (their tapes are held
    aside), so that a function computing with a value of theirs that it
    closes over raises (``chunked`` then takes vmap's other ways) instead
    of mixing its nodes into them; a comparison of such a value is still
    recorded as their guard, which ``chunked`` sees."""
    saved = _active.get()
    tapes = [t.tape for t in saved]

    def setup() -> None:
        _active.set(())
        for t in saved:
            t.tape = None

    def cleanup() -> None:
        for t, tape in zip(saved, tapes):
            t.tape = tape
        _active.set(saved)

    return protected(setup, body, cleanup)


def _call(prim: Primitive, *args: Any) -> Any:
    """``prim`` applied in a rule or to a chunked map's nodes: ``bind``
    without its refusal of arrays (a chunk's values are arrays)."""
    return _bind_values(prim, list(args))


# The primitives ------------------------------------------------------------


def _map_impl(body: Body, n: int, chunk: int, *xs: Any) -> Any:
    np = numpy_module()
    s = body.n_shared
    shared = tuple(xs[:s])
    columns = [x if _is_array(x) else np.full(n, float(x)) for x in xs[s:]]
    out = None
    totals: Any = None
    for a, b in bounds(n, chunk):
        per, tot = body.run_chunk(shared, columns, a, b)
        if out is None:
            out = np.empty(len(per) * n + len(tot))
            totals = np.array(tot, dtype=float)
        else:
            totals += tot  # (elementwise, in chunk order)
        for j, y in enumerate(per):
            out[j * n + a : j * n + b] = y
    assert out is not None
    out[len(out) - len(totals) :] = totals
    out.flags.writeable = False
    return out


def bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """The chunks of ``n`` examples: ``chunk`` each (at least 2: the numpy
    backend batches two examples or more), the last one the rest, which
    joins the one before when it would hold a single example."""
    chunk = max(chunk, 2)
    edges = list(range(0, n, chunk)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] == 1:
        del edges[-2]
    return list(zip(edges[:-1], edges[1:]))


def _map_vjp(g: Any, out: Any, body: Body, n: int, chunk: int, *xs: Any) -> tuple[Any, ...]:
    s, m, k = body.n_shared, len(body.data), body.n_out
    assert k is not None and body.n_totals is not None
    g_per = [_call(part_p, g, j * n, n) for j in range(k)]
    g_tot = [_call(item_p, g, k * n + j) for j in range(body.n_totals)]
    needs = tuple(not d for d in body.data)
    vb = body.derived.get(("vjp", needs))
    if vb is None:
        vb = body.derived[("vjp", needs)] = _vjp_body(body, needs)
    res = _call(map_p, vb, n, chunk, *xs[:s], *g_tot, *xs[s:], *g_per)
    n_needed = sum(needs)
    cts: list[Any] = [None, None, None]
    cts += [_call(item_p, res, (n_needed + k) * n + i) for i in range(s)]
    j = 0
    for i in range(m):
        if needs[i]:
            cts.append(_call(part_p, res, j * n, n))
            j += 1
        else:
            cts.append(None)
    return tuple(cts)


def _vjp_body(body: Body, needs: tuple[bool, ...]) -> Body:
    """The body of the reverse rule: from the shared leaves and the totals'
    cotangents, the columns and the per-example cotangents, the per-example
    cotangents of the columns in ``needs`` and the shared leaves' totals;
    then, after each of those, ``body``'s own outputs (which it computes
    anyway: compiled code can take the forward values from here, see
    :func:`primal_of`)."""
    s, m = body.n_shared, len(body.data)
    k = body.n_out
    assert k is not None

    def fun(shared_in: list[Any], cols_in: list[Any]) -> tuple[list[Any], list[Any]]:
        def inner(tr: Trace) -> tuple[list[Any], list[Any]]:
            sh = [_input(tr, x) for x in shared_in[:s]]
            cl = [_input(tr, c) if needs[i] else c for i, c in enumerate(cols_in[:m])]
            per, totals = body.fun(sh, cl)
            cts = backward(tr, [*zip(per, cols_in[m:]), *zip(totals, shared_in[s:])])
            per_cts = [_ct(cts, cl[i]) for i in range(m) if needs[i]]
            return per_cts + [lower(tr, y) for y in per], [_ct(cts, x) for x in sh] + [
                lower(tr, t) for t in totals
            ]

        return traced("chunk vjp", inner)

    data = body.data + (False,) * k
    vb = Body(fun, s + (body.n_totals or 0), data, f"vjp({body.name})")
    vb.primal = body
    return vb


def _map_jvp(dxs: tuple[Any, ...], out: Any, body: Body, n: int, chunk: int, *xs: Any) -> Any:
    s = body.n_shared
    ds = dxs[3:]
    with_tangent = tuple(i for i, d in enumerate(ds) if d is not None)
    if not with_tangent:
        return None
    jb = body.derived.get(("jvp", with_tangent))
    if jb is None:
        jb = body.derived[("jvp", with_tangent)] = _jvp_body(body, with_tangent)
    ts = [ds[i] for i in with_tangent if i < s]
    tc = [ds[i] for i in with_tangent if i >= s]
    return _call(map_p, jb, n, chunk, *xs[:s], *ts, *xs[s:], *tc)


def _jvp_body(body: Body, with_tangent: tuple[int, ...]) -> Body:
    """The body of the forward rule: the tangents of the outputs (in the
    parent's layout) from the inputs and the tangents of ``with_tangent``."""
    s, m = body.n_shared, len(body.data)
    ts = [i for i in with_tangent if i < s]
    tc = [i - s for i in with_tangent if i >= s]

    def fun(shared_in: list[Any], cols_in: list[Any]) -> tuple[list[Any], list[Any]]:
        def inner(tr: Trace) -> tuple[list[Any], list[Any]]:
            sh = [_input(tr, x) for x in shared_in[:s]]
            cl = [_input(tr, c) for c in cols_in[:m]]
            per, totals = body.fun(sh, cl)
            seeds = [(sh[i], shared_in[s + j]) for j, i in enumerate(ts)]
            seeds += [(cl[i], cols_in[m + j]) for j, i in enumerate(tc)]
            dts = forward(tr, seeds)
            return [_dt(tr, dts, y) for y in per], [_dt(tr, dts, t) for t in totals]

        return traced("chunk jvp", inner)

    return Body(fun, s + len(ts), body.data + (False,) * len(tc), f"jvp({body.name})")


def _input(tr: Trace, x: Any) -> Expr:
    return make_node(tr, x, None, ())


def _ct(cts: list[Any], node: Expr) -> Any:
    c = cts[node.seq]
    return 0.0 if c is None else c


def _dt(tr: Trace, dts: list[Any], y: Any) -> Any:
    if type(y) is Expr and y.trace is tr:
        d = dts[y.seq]
        return 0.0 if d is None else d
    return 0.0


map_p: Primitive = Primitive(
    "chunked_map",
    impl=_map_impl,
    vjp=_map_vjp,
    jvp=_map_jvp,
    symbolic_zeros=True,
    doc="""``chunked_map(body, n, chunk, *shared, *columns)``: ``body`` run on ``n``
examples ``chunk`` at a time (``vmap(f, chunk_size=chunk)``); its value packs the
per-example outputs, then the totals. Derivatives: chunked maps of the body's
vjp (recomputing each chunk) and jvp.""",
)


def _pad(g: Any, start: int, length: int, total: int) -> Any:
    out = numpy_module().zeros(total)
    out[start : start + length] = g
    return out


def _total(p: Any) -> int:
    return len(_peel(p))


part_p: Primitive = Primitive(
    "chunk_part",
    impl=lambda p, start, n: p[start : start + n],
    vjp=lambda g, out, p, start, n: (_call(pad_p, g, start, n, _total(p)), None, None),
    jvp=lambda dxs, out, p, start, n: _call(part_p, dxs[0], start, n),
    symbolic_zeros=True,
    doc="""``chunk_part(p, start, n)``: the ``n`` values of a chunked map's output ``p``
from ``start`` (one per-example output). Derivative: the identity on that slice.""",
)

item_p: Primitive = Primitive(
    "chunk_item",
    impl=lambda p, i: float(p[i]),
    vjp=lambda g, out, p, i: (_call(pad_p, g, i, 1, _total(p)), None),
    jvp=lambda dxs, out, p, i: _call(item_p, dxs[0], i),
    symbolic_zeros=True,
    doc="""``chunk_item(p, i)``: value ``i`` of a chunked map's output ``p`` (a total).
Derivative: 1 at ``i``.""",
)

pad_p: Primitive = Primitive(
    "chunk_pad",
    impl=_pad,
    vjp=lambda g, out, x, start, n, total: (
        _call(part_p, g, start, n) if _is_array(_peel(x)) else _call(item_p, g, start),
        None,
        None,
        None,
    ),
    jvp=lambda dxs, out, x, start, n, total: _call(pad_p, dxs[0], start, n, total),
    symbolic_zeros=True,
    doc="""``chunk_pad(x, start, n, total)``: zeros of length ``total`` with ``x`` at
``start`` (the cotangent of a part). Derivative: the identity on that slice.""",
)


def _primal_of(v: Any, n: int, k_cts: int, k: int, s: int) -> Any:
    np = numpy_module()
    per = (k_cts + k) * n
    out = np.concatenate((v[k_cts * n : per], v[per + s :]))
    out.flags.writeable = False
    return out


primal_of: Primitive = Primitive(
    "chunk_primal",
    impl=_primal_of,
    doc="""``chunk_primal(v, n, k_cts, k, s)``: the output of a chunked map read off the
output ``v`` of its reverse rule's map, which computes it too (compiled code runs
the two maps as one when the cotangents do not depend on the forward values).
It appears in compiled code only, and has no derivative rules.""",
)

for _p in (map_p, part_p, item_p, pad_p, primal_of):
    _p.trusted = True
    TRUSTED.add(id(_p))


def chunked(body: Body, n: int, chunk: int, shared: list[Any], columns: list[Any]) -> list[Any]:
    """The per-example outputs of ``body`` over ``n`` examples, ``chunk`` at
    a time, as batches (nodes of the active traces); raises NotBatched."""
    np = numpy_module()
    values = tuple(_peel(x) for x in shared)
    arrays = [np.asarray(_peel(c)) for c in columns]
    a, b = bounds(n, chunk)[0]
    outer = _active.get()
    before = [len(t.guards or ()) for t in outer]
    try:
        body.run_chunk(values, arrays, a, b)  # compiles, and learns the outputs
    except Exception:  # noqa: BLE001 - vmap's other ways run f again: a genuine error is raised there
        raise NotBatched from None
    if [len(t.guards or ()) for t in outer] != before:
        # The function compared a traced value it closes over: a chunk, run
        # on its own, cannot branch on it. vmap's other ways can.
        raise NotBatched
    packed = _call(map_p, body, n, chunk, *shared, *columns)
    assert body.n_out is not None
    return [_call(part_p, packed, j * n, n) for j in range(body.n_out)]
