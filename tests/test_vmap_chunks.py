"""vmap(chunk_size=N): the batch run N examples at a time, forward and
reverse, against the unchunked run (to 1e-12 relative) and vmap's loop;
the memory of a chunked gradient; its fallbacks and errors."""

from __future__ import annotations

import math
import tracemalloc

import pytest
from conftest import SLOW

import fgrad as fg
from fgrad.demo import example_loss
from fgrad.nn import MLP

np = pytest.importorskip("numpy")


def close(a, b, rel=1e-12):
    la, lb = fg.tree_leaves(a), fg.tree_leaves(b)
    assert fg.tree_structure(a) == fg.tree_structure(b)
    bad = [(x, y) for x, y in zip(la, lb) if not abs(x - y) <= rel * max(abs(x), abs(y), 1e-300)]
    assert not bad, bad[:5]


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return tuple(map(tuple, x.tolist())), tuple(float(v) for v in np.sign(x[:, 0] * x[:, 1]))


def mlp_loss(chunk):
    def loss(m, xs, ys):
        return fg.mean(fg.vmap(example_loss, in_axes=(None, 0, 0), chunk_size=chunk)(m, xs, ys))

    return loss


MODEL = MLP.init([2, 8, 8, 1], seed=1)


@pytest.mark.parametrize(("n", "chunk"), [(250, 64), (256, 64), (100, 1), (65, 64)])
def test_jit_value_and_grad_equals_unchunked(n, chunk):
    xs, ys = data(n)
    whole = fg.jit(fg.value_and_grad(mlp_loss(None)), static_argnums=(1, 2))(MODEL, xs, ys)
    step = fg.jit(fg.value_and_grad(mlp_loss(chunk)), static_argnums=(1, 2))
    close(step(MODEL, xs, ys), whole)
    moved = fg.tree_map(lambda p: p * 1.5 - 0.1, MODEL)  # the compiled path, new parameters
    close(
        step(moved, xs, ys), fg.jit(fg.value_and_grad(mlp_loss(None)), static_argnums=(1, 2))(moved, xs, ys)
    )
    assert step.cache_info().traces == 1


def test_without_jit_chunk_size_changes_nothing(monkeypatch):
    """Chunks run under jit (the rules of the transforms inside it compute
    with its nodes); an eager transform maps by vmap's loop, bit for bit."""
    xs, ys = data(150)
    runs = _chunk_runs(monkeypatch)
    assert fg.value_and_grad(mlp_loss(32))(MODEL, xs, ys) == fg.value_and_grad(mlp_loss(None))(MODEL, xs, ys)
    w = (0.7, -0.3)
    assert fg.hessian(scalar_loss(16))(w) == fg.hessian(scalar_loss(None))(w)
    assert fg.jvp(scalar_loss(16), (w,), ((1.0, 2.0),)) == fg.jvp(scalar_loss(None), (w,), ((1.0, 2.0),))
    assert runs == []


def test_without_a_transform_it_is_the_loop_bit_for_bit():
    xs, ys = data(40)
    f = fg.vmap(example_loss, in_axes=(None, 0, 0), chunk_size=7)
    assert f(MODEL, xs, ys) == tuple(example_loss(MODEL, x, y) for x, y in zip(xs, ys))


def test_chunk_as_large_as_the_batch_is_the_unchunked_code():
    xs, ys = data(30)
    a = fg.jit(fg.value_and_grad(mlp_loss(30)), static_argnums=(1, 2))
    b = fg.jit(fg.value_and_grad(mlp_loss(None)), static_argnums=(1, 2))
    assert a(MODEL, xs, ys) == b(MODEL, xs, ys)
    c = fg.jit(fg.value_and_grad(mlp_loss(29)), static_argnums=(1, 2))
    close(c(MODEL, xs, ys), b(MODEL, xs, ys))


def scalar_loss(chunk, n=90):
    xs = [0.1 * i - 3.0 for i in range(n)]

    def loss(w):
        a, b = w
        per = fg.vmap(
            lambda w, x: fg.tanh(w[0] * x + w[1]) * fg.exp(w[0] * w[1] * x), (None, 0), chunk_size=chunk
        )
        return fg.mean(per(w, xs))

    return loss


def test_second_order_both_modes():
    w = (0.7, -0.3)
    wrap = fg.jit
    close(wrap(fg.hessian(scalar_loss(16)))(w), fg.hessian(scalar_loss(None))(w), rel=1e-11)
    jv = wrap(lambda w: fg.jvp(scalar_loss(16), (w,), ((1.0, -2.0),)))(w)
    close(jv, fg.jvp(scalar_loss(None), (w,), ((1.0, -2.0),)))
    # third order: grad of a Hessian entry
    h01 = lambda c: lambda w: fg.grad(lambda w: fg.grad(scalar_loss(c))(w)[0])(w)[1]  # noqa: E731
    close(wrap(fg.grad(h01(16)))(w), fg.grad(h01(None))(w), rel=1e-10)
    # forward over reverse where the cotangents depend on the outputs
    xs = [0.1 * i - 2.0 for i in range(40)]

    def squares(c):
        return lambda w: fg.sum(
            [y * y for y in fg.vmap(lambda w, x: fg.sin(w[0] * x) * w[1], (None, 0), chunk_size=c)(w, xs)]
        )

    close(wrap(fg.hessian(squares(7)))(w), fg.hessian(squares(None))(w), rel=1e-11)
    close(
        wrap(lambda w: fg.jvp(fg.grad(squares(7)), (w,), ((1.0, 0.5),)))(w),
        fg.jvp(fg.grad(squares(None)), (w,), ((1.0, 0.5),)),
    )


def test_gradient_with_respect_to_the_mapped_values():
    xs = [0.05 * i for i in range(70)]

    def loss(xs, chunk):
        return fg.sum(fg.vmap(lambda w, x: fg.sin(w * x) * x, (None, 0), chunk_size=chunk)(1.3, xs))

    g = fg.jit(fg.grad(loss), static_argnums=1)(xs, 8)
    close(list(g), [math.cos(1.3 * x) * 1.3 * x + math.sin(1.3 * x) for x in xs], rel=1e-12)
    close(list(fg.grad(loss)(xs, 8)), list(fg.grad(loss)(xs, None)))


def test_structured_outputs_and_reading_examples():
    xs = [0.1 * i for i in range(50)]

    def f(w, chunk):
        outs = fg.vmap(lambda w, x: {"a": w * x, "b": (fg.exp(x), w)}, (None, 0), chunk_size=chunk)(w, xs)
        return fg.sum([o["a"] * o["b"][0] + o["b"][1] for o in outs]) + outs[7]["a"]

    for wrap in (fg.jit, lambda f: f):
        close(
            wrap(fg.value_and_grad(f), static_argnums=1)(0.4, 9)
            if wrap is fg.jit
            else fg.value_and_grad(f)(0.4, 9),
            fg.value_and_grad(f)(0.4, None),
        )


def test_a_batched_result_makes_its_items_only_when_read():
    xs = tuple(float(i) for i in range(1000))
    seen = {}

    def loss(w):
        outs = fg.vmap(lambda w, x: w * x, (None, 0), chunk_size=100)(w, xs)
        total = fg.mean(outs)
        seen["before"] = outs._items
        seen["len"] = len(outs)
        return total

    assert fg.jit(fg.grad(loss))(2.0) == pytest.approx(499.5, rel=1e-15)
    assert seen == {"before": None, "len": 1000}


def test_the_lazy_tuple_behaves_as_a_tuple():
    xs = [1.0, 2.0, 3.0, 4.0]

    def f(w):
        outs = fg.vmap(lambda w, x: w * x, (None, 0), chunk_size=3)(w, xs)
        assert isinstance(outs, tuple) and len(outs) == 4 and bool(outs)
        values = [o.value for o in outs]
        assert values == [2.0, 4.0, 6.0, 8.0]
        a, b, c, d = outs
        assert list(reversed(outs))[0] is d and outs[1:3] == (b, c) and outs.index(c) == 2
        assert (outs + (1.0,))[-1] == 1.0 and len(outs * 2) == 8 and tuple(outs) == (a, b, c, d)
        return fg.sum(list(outs)) + d

    assert fg.jit(f)(2.0) == 28.0

    def formatted(w):
        outs = fg.vmap(lambda w, x: w * x, (None, 0), chunk_size=3)(w, xs)
        with pytest.raises(TypeError):  # C code reading the storage of a lazy tuple sees none
            "%s %s %s %s" % outs  # noqa: UP031
        assert ("%s %s %s %s" % tuple(outs)).startswith("Expr(")  # noqa: UP031
        return fg.sum(list(outs))

    assert fg.jit(formatted)(2.0) == 20.0


def test_branches_on_shared_values_inside_the_function():
    xs = [0.1 * i - 1.0 for i in range(40)]

    def per(w, x):
        return w * x if w > 0 else fg.exp(w * x)

    def loss(w, chunk):
        return fg.mean(fg.vmap(per, (None, 0), chunk_size=chunk)(w, xs))

    step = fg.jit(fg.value_and_grad(loss), static_argnums=1)
    for w in (0.5, -0.5, 2.0, -1.5):
        close(step(w, 6), fg.value_and_grad(loss)(w, None))


def test_a_function_that_branches_on_a_shared_value_is_not_chunked(monkeypatch):
    """A branch on a shared value would be guarded in each chunk's own
    program, out of sight of the program that runs the chunks: such a
    function is mapped as without chunk_size (both branches right, whatever
    the structure or the batchability of the other branch)."""
    xs = [0.1 * i + 0.1 for i in range(10)]
    runs = _chunk_runs(monkeypatch)

    def per(w, x):  # the other branch: another structure, as many leaves
        return (w * x, x) if w > 0 else {"p": x * x, "q": w * x * x}

    def loss(w, c):
        outs = fg.vmap(per, (None, 0), chunk_size=c)(w, xs)
        return fg.sum([o[0] if isinstance(o, tuple) else o["q"] for o in outs])

    def needs_the_loop(w, x):  # the other branch needs one example at a time
        return w * x if w > 0 else (x if x > 0.5 else -x)

    def loss2(w, c):
        return fg.mean(fg.vmap(needs_the_loop, (None, 0), chunk_size=c)(w, xs))

    for f in (loss, loss2):
        step = fg.jit(fg.value_and_grad(f), static_argnums=1)
        for w in (1.0, -1.0, 2.0):
            close(step(w, 4), fg.value_and_grad(f)(w, None))
    assert runs and all((a, b) == (0, 4) for _, a, b in runs)  # a first chunk, tried: never the rest


def test_outputs_that_are_not_traced_stay_as_returned():
    xs = [0.1 * i for i in range(10)]

    def f(w, c):
        outs = fg.vmap(lambda w, x: (w * x, 2, "tag", True), (None, 0), chunk_size=c)(w, xs)
        assert outs[3][1:] == (2, "tag", True) and type(outs[3][1]) is int
        return fg.sum([o[0] for o in outs]) * [1.0, 10.0, 100.0][outs[0][1]]

    for c in (None, 4):
        assert fg.jit(fg.grad(f), static_argnums=1)(1.5, c) == pytest.approx(100.0 * sum(xs), rel=1e-15)


def test_taylor_mode_maps_the_loop():
    xs = [0.13 * i - 1.1 for i in range(25)]

    def loss(c):
        return lambda w: fg.mean(
            fg.vmap(lambda w, x: fg.sin(w * x) * fg.exp(0.3 * w * x), (None, 0), chunk_size=c)(w, xs)
        )

    want = fg.derivatives(loss(None), 3)(0.9)
    assert fg.derivatives(loss(4), 3)(0.9) == want
    # under jit too, where the unchunked numpy backend had met Taylor mode's
    # comparisons of coefficients with a batch (an internal error)
    assert fg.jit(fg.derivatives(loss(4), 3))(0.9) == want
    assert fg.jit(fg.derivatives(loss(None), 3))(0.9) == want


def test_a_guard_on_chunked_outputs_compares_the_loops_bits():
    """Chunked values agree with vmap's loop to rounding: a Python branch on
    one (or on anything computed from one) makes jit trace the program again
    with the loop, as for the unchunked numpy code, so a threshold right at
    the loop's value decides as the loop does."""
    xs, ys = data(64)

    def guarded(c, thr):
        def loss(m):
            value = fg.mean(fg.vmap(example_loss, (None, 0, 0), chunk_size=c)(m, xs, ys))
            return value * 2.0 if value > thr else value

        return loss

    at = fg.value_and_grad(guarded(None, 0.0))(MODEL)[0]  # the loop's value
    for thr in (at, math.nextafter(at, 0.0), math.nextafter(at, 2.0)):
        step = fg.jit(fg.value_and_grad(guarded(16, thr)))
        want = fg.value_and_grad(guarded(None, thr))(MODEL)
        assert step(MODEL) == step(MODEL)
        close(step(MODEL), want)
        assert step.cache_info().traces == 2


def test_batched_results_are_batched_tuples_everywhere():
    import copy
    import pickle

    xs = [1.0, 2.0, 3.0]
    f = fg.vmap(lambda w, x: (w * x, x), (None, 0))
    eager, compiled = f(2.0, xs), fg.jit(f)(2.0, xs)
    assert type(eager) is type(compiled) and fg.tree_structure(eager) == fg.tree_structure(compiled)
    assert fg.tree_map(lambda a, b: a - b, eager, compiled) == ((0.0, 0.0),) * 3
    for x in (eager, compiled):
        assert pickle.loads(pickle.dumps(x)) == x and type(pickle.loads(pickle.dumps(x))) is type(x)
        assert copy.copy(x) == x and copy.deepcopy(x) == x


def test_functions_that_need_one_example_at_a_time_take_the_loop():
    xs = [0.1 * i - 1.0 for i in range(30)]

    def per(w, x):
        return w * x if x > 0 else -w * x  # a branch on the example: not a batch

    def loss(w, chunk):
        return fg.mean(fg.vmap(per, (None, 0), chunk_size=chunk)(w, xs))

    assert fg.jit(fg.value_and_grad(loss), static_argnums=1)(0.7, 4) == fg.value_and_grad(loss)(0.7, None)
    outs = fg.jit(lambda w: fg.vmap(lambda w, x: (w * x, "tag"), (None, 0), chunk_size=4)(w, xs))(2.0)
    assert outs[3] == (2.0 * xs[3], "tag")


def test_debug_nans_runs_the_loop():
    xs = [1.0, 0.0, 2.0, 3.0]

    def loss(w):
        return fg.sum(fg.vmap(lambda w, x: fg.log(x) * w, (None, 0), chunk_size=2)(w, xs))

    assert fg.jit(fg.grad(loss))(1.0) == -math.inf
    with fg.debug_nans(), pytest.raises(fg.NanError):
        fg.jit(fg.grad(lambda w: loss(w) * 0.0))(1.0)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "8"])
def test_bad_chunk_size(bad):
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        fg.vmap(lambda x: x, chunk_size=bad)


def test_numpy_array_arguments_are_one_batch():
    x0 = np.linspace(-1.0, 1.0, 64)

    def loss(w, xs, chunk):
        return fg.mean(fg.vmap(lambda w, x: fg.tanh(w * x) ** 2, (None, 0), chunk_size=chunk)(w, xs))

    for chunk in (None, 10):
        step = fg.jit(fg.value_and_grad(loss), static_argnums=2)
        close(step(0.8, x0, chunk), fg.value_and_grad(loss)(0.8, tuple(x0.tolist()), None))
        other = x0[::-1].copy() * 0.5
        close(step(0.8, other, chunk), fg.value_and_grad(loss)(0.8, tuple(other.tolist()), None))
        assert step.cache_info().traces == 1
        assert "index" not in step.source(0.8, x0, chunk)  # no node per example


def _peak(f, *args):
    f(*args)  # traced and compiled
    tracemalloc.start()
    try:
        f(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_a_chunked_gradient_is_one_chunks():
    """A step over n = 100 chunks holds about one chunk's values: its peak
    is no more than an unchunked step over one chunk, plus a few arrays of
    n values (the outputs and their cotangents)."""
    chunk = 10_000 if SLOW else 1_000
    n = 100 * chunk
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2))
    model = MLP.init([2, 16, 16, 1], seed=1)

    def loss(m, x0, x1, ys, c):
        per = fg.vmap(lambda m, a, b, y: example_loss(m, (a, b), y), (None, 0, 0, 0), chunk_size=c)
        return fg.mean(per(m, x0, x1, ys))

    cols = (x[:, 0].copy(), x[:, 1].copy(), np.sign(x[:, 0] * x[:, 1]))
    chunked = fg.jit(fg.value_and_grad(loss), static_argnums=4)
    one_chunk = _peak(chunked, model, *(c[:chunk].copy() for c in cols), None)
    peak = _peak(chunked, model, *cols, chunk)
    assert peak <= one_chunk + 8 * 8 * n, (peak, one_chunk)
    whole = _peak(chunked, model, *cols, None)
    assert peak < whole / 4, (peak, whole)


def _chunk_runs(monkeypatch):
    from fgrad.transforms import chunks

    runs = []
    real = chunks.Body.run_chunk

    def counted(self, shared, columns, a, b):
        runs.append((self.name, a, b))
        return real(self, shared, columns, a, b)

    monkeypatch.setattr(chunks.Body, "run_chunk", counted)
    return runs


def test_value_and_grad_runs_each_chunk_once_when_it_can(monkeypatch):
    """The value's map and the reverse rule's map run as one (the reverse
    one returns the forward values too) where the cotangents do not depend
    on the forward values; where they do, both run."""
    xs, ys = data(1000)
    runs = _chunk_runs(monkeypatch)

    def squared(m, xs, ys):  # the cotangent of each example depends on its value
        outs = fg.vmap(example_loss, in_axes=(None, 0, 0), chunk_size=300)(m, xs, ys)
        return fg.sum([o * o for o in outs])

    for loss, passes in ((mlp_loss(300), 1), (squared, 2)):
        step = fg.jit(fg.value_and_grad(loss), static_argnums=(1, 2))
        got = step(MODEL, xs, ys)
        runs.clear()
        again = step(MODEL, xs, ys)
        assert again == got
        assert [(a, b) for _, a, b in runs] == [(0, 300), (300, 600), (600, 900), (900, 1000)] * passes
        names = [name.startswith("vjp(") for name, _, _ in runs]
        assert names == ([True] * 4 if passes == 1 else [False] * 4 + [True] * 4)
        close(got, fg.value_and_grad(loss)(MODEL, xs, ys), rel=1e-12)  # eager: two passes, unfused


XS20 = [0.1 * i + 0.05 for i in range(20)]


def test_a_function_closing_over_a_traced_value_takes_vmaps_other_ways():
    """A chunk runs on its own, where a value traced outside cannot reach:
    a function that closes over one (computes with it, or branches on it)
    is mapped as without chunk_size, with the same results."""

    def computes(c):
        return lambda w: fg.mean(fg.vmap(lambda x: fg.sin(w * x) * fg.exp(w), 0, chunk_size=c)(XS20))

    for transform in (
        fg.grad,
        fg.hessian,
        lambda f: fg.jit(fg.value_and_grad(f)),
        lambda f: fg.jit(fg.hessian(f)),
        lambda f: lambda w: fg.jvp(fg.grad(f), (w,), (1.0,)),
        lambda f: fg.grad(fg.grad(fg.jit(f))),
    ):
        assert transform(computes(4))(0.7) == transform(computes(None))(0.7)

    def branches(w, c):
        return fg.mean(fg.vmap(lambda x: x * 2.0 if w > 0 else x * 3.0, 0, chunk_size=c)(XS20)) + w

    for c in (None, 4):
        f, g = fg.jit(branches, static_argnums=1), fg.jit(fg.value_and_grad(branches), static_argnums=1)
        for w in (1.0, -1.0, 2.0, -3.0):
            want = (2.0 if w > 0 else 3.0) * fg.mean(XS20) + w
            assert f(w, c) == pytest.approx(want, rel=1e-15, abs=1e-15)
            assert g(w, c) == (f(w, c), 1.0)


def test_chunks_hold_two_examples_at_least_and_come_in_two_lengths_at_most():
    from fgrad.transforms.chunks import bounds

    assert bounds(250, 64) == [(0, 64), (64, 128), (128, 192), (192, 250)]
    assert bounds(65, 64) == [(0, 65)]  # a last chunk of one joins the one before
    assert bounds(129, 64) == [(0, 64), (64, 129)]
    assert bounds(7, 1) == [(0, 2), (2, 4), (4, 7)]
    for n in range(2, 60):
        for chunk in range(1, 12):
            got = bounds(n, chunk)
            assert got[0][0] == 0 and got[-1][1] == n and all(b - a >= 2 for a, b in got)
            assert all(x[1] == y[0] for x, y in zip(got, got[1:])) and len({b - a for a, b in got}) <= 2


def test_rules_computing_with_values_and_rules_that_branch():
    """A chunked vmap over constants in a custom rule (which computes with
    values) is nothing to chunk; a primitive whose rule branches on its
    input meets a batch in the reverse pass, after vmap returned, so jit
    traces the program again with vmap's loop (chunked or not)."""
    xs = [0.1 * i - 1.0 for i in range(30)]

    def model(c):
        @fg.custom_vjp
        def f(w):
            return fg.tanh(w)

        def bwd(w, g):
            d = fg.mean(fg.vmap(lambda w, x: x * (1 - fg.tanh(w * x) ** 2), (None, 0), chunk_size=c)(w, xs))
            return (g * d,)

        f.defvjp(lambda w: (f(w), w), bwd)
        return lambda w: f(w) * w

    for transform in (fg.grad, lambda g: fg.jit(fg.grad(g)), lambda g: fg.jit(fg.grad(fg.grad(g)))):
        got, want = transform(model(7))(0.8), transform(model(None))(0.8)
        assert type(got) is float and got == pytest.approx(want, rel=1e-12)

    kink = fg.Primitive(
        "kink",
        impl=lambda x: x if x > 0 else 0.0,
        vectorized=lambda x: np.maximum(x, 0.0),
        vjp=lambda g, out, x: (g if x > 0 else 0.0,),
        jvp=lambda dxs, out, x: dxs[0] if x > 0 else 0.0,
    )

    def loss(c):
        return lambda w: fg.mean(fg.vmap(lambda w, x: kink(w * x), (None, 0), chunk_size=c)(w, xs))

    for c in (None, 7):
        step = fg.jit(fg.value_and_grad(loss(c)))
        assert step(0.5) == fg.value_and_grad(loss(None))(0.5)
        assert step.cache_info().traces == 2


def test_an_eager_batched_result_is_a_plain_tuple():
    b, t = fg.vmap(lambda x: x * 2.0)([1.0, 2.0, 3.0]), (2.0, 4.0, 6.0)
    assert b == t and hash(b) == hash(t) and b[-1] == 6.0 and b[::-1] == t[::-1]
    for other in ([1.0], 5, None, "x"):
        with pytest.raises(TypeError):
            b < other  # noqa: B015
    arr = np.array([10.0, 20.0, 30.0])
    assert (b + arr).tolist() == (t + arr).tolist() and (b * np.array(2)).tolist() == [4.0, 8.0, 12.0]
    assert (b != arr).tolist() == [True, True, True]


def test_a_tuple_subclass_names_the_type_it_rebuilds_as():
    class Shown(tuple):
        pass

    class Hidden(Shown):
        __tree_type__ = Shown

    tree = (Hidden((1.0, 2.0)), Shown((3.0,)))
    assert fg.tree_structure(tree) == fg.tree_structure((Shown((5.0, 6.0)), Shown((7.0,))))
    rebuilt = fg.tree_map(lambda x: x * 2, tree)
    assert type(rebuilt[0]) is Shown and rebuilt == (Shown((2.0, 4.0)), Shown((6.0,)))
