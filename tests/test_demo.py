"""The moons demo: trains to 100% accuracy; its printed numbers are honest."""

from __future__ import annotations

import io
import os
import re
import runpy
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

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
    with pytest.raises(SystemExit) as info:
        runpy.run_path("examples/moons.py", run_name="__main__")
    assert info.value.code == 0
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


# The command: exit status, arguments checked before training, the picture it says it wrote ---------

ROOT = Path(__file__).resolve().parent.parent


def console_script() -> str:
    """The ``fgrad-demo`` entry point as pyproject.toml declares it (what pip installs)."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["fgrad-demo"]


def test_the_console_script_exits_with_status_0_and_prints_no_repr():
    # What pip's wrapper does: load the entry point, sys.exit(its return value).
    wrapper = (
        "import sys\n"
        "from importlib.metadata import EntryPoint\n"
        f"entry = EntryPoint('fgrad-demo', {console_script()!r}, 'console_scripts').load()\n"
        "sys.argv = ['fgrad-demo', '--steps', '1', '--n', '4', '--no-plot']\n"
        "sys.exit(entry())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "final loss" in run.stdout and "Result(" not in run.stdout + run.stderr


def test_the_entry_point_returns_0_the_way_the_wrapper_uses_it(monkeypatch, capsys):
    entry = EntryPoint("fgrad-demo", console_script(), "console_scripts").load()
    assert entry is demo.cli
    monkeypatch.setattr(sys, "argv", ["fgrad-demo", "--steps", "1", "--n", "4", "--no-plot"])
    with pytest.raises(SystemExit) as info:
        sys.exit(entry())
    assert info.value.code == 0 and "final loss" in capsys.readouterr().out


def test_ctrl_c_ends_the_command_with_status_130_and_no_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "train", interrupted)
    assert demo.cli(["--steps", "1", "--n", "4", "--no-plot"]) == 130
    assert "interrupted" in capsys.readouterr().err


def no_training(monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("trained before checking the arguments")

    monkeypatch.setattr(demo, "train", train)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--steps", "-5"], "argument --steps: must be at least 1, got -5"),
        (["--steps", "1.5"], "argument --steps: expected a whole number, got '1.5'"),
        (["--n", "1"], "argument --n: must be at least 2, got 1"),
        (["--n", "0"], "argument --n: must be at least 2, got 0"),
        (["--n", "many"], "argument --n: expected a whole number, got 'many'"),
        (["--seed", "0.5"], "argument --seed: expected a whole number, got '0.5'"),
        (["--style", "tiny"], "argument --style: invalid choice: 'tiny'"),
        (["--out", "b.txt"], "argument --out: the picture is a PNG, so the name must end in .png"),
        (["--out", "b.pdf"], "argument --out: the picture is a PNG"),
        (["--out", "missing/b.png"], "argument --out: the directory"),
        (["--out", ""], "argument --out: expected a file name or a directory"),
        (["--out", "b.png", "--no-plot"], "argument --no-plot: not allowed with argument --out"),
    ],
)
def test_bad_arguments_are_refused_before_training(tmp_path, monkeypatch, capsys, argv, message):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    no_training(monkeypatch)
    with pytest.raises(SystemExit) as info:
        demo.main(argv, out=io.StringIO())
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: fgrad-demo") and message in err
    assert list(tmp_path.iterdir()) == []


def test_an_out_path_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    no_training(monkeypatch)
    (tmp_path / "b.png").write_bytes(b"old")
    real_access = os.access
    # As if not root: no permission to write (root may write anything).
    monkeypatch.setattr(os, "access", lambda p, m, **kw: (m & os.W_OK) == 0 and real_access(p, m, **kw))
    for out in (tmp_path / "b.png", tmp_path / "new.png"):  # an existing file, a new one in the directory
        with pytest.raises(SystemExit) as info:
            demo.main(["--out", str(out)], out=io.StringIO())
        assert info.value.code == 2 and "argument --out: cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        demo.main(["--out", str(tmp_path / "b.png" / "x.png")], out=io.StringIO())  # under a file
    assert info.value.code == 2 and "does not exist" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"] and (tmp_path / "b.png").read_bytes() == b"old"


def test_out_without_matplotlib_is_refused_before_training(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    no_training(monkeypatch)
    with pytest.raises(SystemExit) as info:
        demo.main(["--out", "b.png"], out=io.StringIO())
    assert info.value.code == 2 and "saving a PNG needs matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize(
    "out, written",
    [("pictures", os.path.join("pictures", "moons.png")), ("boundary", "boundary.png"), ("b.PNG", "b.PNG")],
)
def test_the_path_printed_is_the_png_written(tmp_path, monkeypatch, out, written):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pictures").mkdir()
    text = io.StringIO()
    demo.main(["--steps", "1", "--n", "4", "--out", out], out=text)
    assert f"decision boundary saved to {written}\n" in text.getvalue()
    assert (tmp_path / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [written]


def test_a_failure_to_save_after_training_exits_1_without_a_traceback(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(demo, "plot_boundary", disk_full)
    with pytest.raises(SystemExit) as info:
        demo.main(["--steps", "1", "--n", "4", "--out", str(tmp_path / "b.png")], out=io.StringIO())
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert f"cannot save the boundary to {tmp_path / 'b.png'}: No space left on device" in err


@pytest.mark.parametrize("extra", [[], ["--vmap"], ["--style", "binary"]])
def test_the_smallest_run_works(extra):
    text = io.StringIO()
    result = demo.main(["--steps", "1", "--n", "2", "--no-plot", *extra], out=text)
    assert len(result.losses) == 1 and len(result.model.layers) == 3
    assert "2 examples" in text.getvalue() and "1 SGD step\n" in text.getvalue()


def test_train_refuses_what_it_cannot_run():
    xs, ys = moons(4, noise=0.1, seed=0)
    model = MLP.init([2, 4, 1], seed=0)
    for steps, error in [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="train: steps must be an int >= 1"):
            demo.train(model, xs, ys, steps=steps)
    with pytest.raises(ValueError, match="one label per example"):
        demo.train(model, xs, ys[:3], steps=1)  # zip would have dropped an example silently
    with pytest.raises(ValueError, match="at least one example"):
        demo.train(model, (), (), steps=1)
    with pytest.raises(ValueError, match="learning_rate: steps must be an int >= 1"):
        demo.learning_rate(0)


def test_with_vmap_the_printed_node_count_is_the_vmap_loss_graph():
    out = io.StringIO()
    result = demo.main(["--steps", "1", "--n", "6", "--vmap", "--style", "binary", "--no-plot"], out=out)
    xs, ys = moons(6, noise=0.1, seed=0)
    want = fg.count_nodes(fg.trace(lambda m: demo.vmap_loss(m, xs, ys))(result.model))
    assert result.nodes_per_step == want != demo.nodes_per_step(result.model, xs, ys)
    assert f"{want} nodes per step" in out.getvalue()
