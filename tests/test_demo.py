"""The moons demo: trains to 100% accuracy; its printed numbers are honest."""

from __future__ import annotations

import io
import re
import runpy
import sys

import pytest

import fgrad as fg
from fgrad import demo
from fgrad.datasets import moons
from fgrad.nn import MLP


def test_demo_reaches_full_training_accuracy_at_full_size():
    out = io.StringIO()
    result = demo.main(["--no-plot"], out=out)
    assert result.accuracy == 1.0
    assert len(result.losses) == 100
    assert result.losses[-1] < result.losses[0]
    assert "accuracy 100.0%" in out.getvalue()


@pytest.mark.parametrize("style", ["fused", "sum", "binary"])
def test_printed_node_count_is_the_loss_graph_size(style):
    out = io.StringIO()
    result = demo.main(["--steps", "2", "--n", "20", "--style", style, "--no-plot"], out=out)
    xs, ys = moons(20, noise=0.1, seed=0)
    graph = fg.trace(lambda m: demo.loss(m, xs, ys)[0])(result.model)
    assert result.nodes_per_step == fg.count_nodes(graph)
    printed = int(re.search(r"(\d+) nodes per step", out.getvalue()).group(1))
    assert printed == result.nodes_per_step


def test_node_counts_shrink_with_the_graph_style():
    xs, ys = moons(100, noise=0.1, seed=0)
    model = MLP.init([2, 16, 16, 1], seed=0)
    counts = {s: demo.nodes_per_step(model.with_style(s), xs, ys) for s in ("binary", "sum", "fused")}
    assert counts["binary"] > counts["sum"] > counts["fused"]
    assert counts["fused"] <= 7500


def test_styles_train_identically():
    xs, ys = moons(30, noise=0.1, seed=2)
    model = MLP.init([2, 8, 1], seed=2)
    runs = {s: demo.train(model.with_style(s), xs, ys, steps=3).losses for s in ("binary", "sum", "fused")}
    assert runs["binary"] == pytest.approx(runs["fused"], abs=1e-12)
    assert runs["sum"] == pytest.approx(runs["fused"], abs=1e-12)


def test_without_matplotlib_the_boundary_is_drawn_in_characters(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    out = io.StringIO()
    demo.main(["--steps", "2", "--n", "20"], out=out)
    text = out.getvalue()
    assert "fgrad[plot]" in text
    assert "o" in text and "x" in text and "|" in text


def test_png_is_written_when_matplotlib_is_present(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "b.png"
    demo.main(["--steps", "1", "--n", "10", "--out", str(path)], out=io.StringIO())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_script_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["moons.py", "--steps", "1", "--n", "10", "--no-plot"])
    runpy.run_path("examples/moons.py", run_name="__main__")
    assert "final loss" in capsys.readouterr().out


def test_vmap_mode_reaches_full_accuracy_and_says_when_numpy_is_missing(monkeypatch):
    out = io.StringIO()
    result = demo.main(["--vmap", "--no-plot"], out=out)
    assert result.accuracy == 1.0
    assert "vmap under jit" in out.getvalue() and "numpy is not installed" not in out.getvalue()
    monkeypatch.setattr(demo, "have_numpy", lambda: False)
    out = io.StringIO()
    demo.main(["--vmap", "--no-plot", "--steps", "1", "--n", "10"], out=out)
    assert "pip install 'fgrad[numpy]'" in out.getvalue()
