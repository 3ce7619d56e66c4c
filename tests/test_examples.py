"""Every example runs, with small sizes, and does what it says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_derivatives_example_agrees_three_ways(capsys):
    result = load("derivatives").main(["--x", "0.3", "--order", "5"])
    assert result["nested"] == pytest.approx(result["taylor"], rel=1e-10)
    out = capsys.readouterr().out
    assert "central difference" in out and "tanh(sin(x)) * exp(x)" in out


def test_regression_example_recovers_the_curve(capsys):
    params, mse = load("regression").main(["--steps", "150", "--n", "30"])
    assert mse < 0.01
    assert params["a"] == pytest.approx(1.5, abs=0.1) and params["b"] == pytest.approx(2.0, abs=0.1)
    assert "true values" in capsys.readouterr().out


# The first minutes: bad options are refused before any work, tiny runs work ------------------

BAD_OPTIONS = [
    ("regression", ["--steps", "0"], "argument --steps: must be at least 1, got 0"),
    ("regression", ["--steps", "-3"], "argument --steps: must be at least 1, got -3"),
    ("regression", ["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    ("regression", ["--n", "0"], "argument --n: must be at least 1, got 0"),
    ("regression", ["--lr", "0"], "argument --lr: must be a finite number > 0, got 0.0"),
    ("regression", ["--lr", "-0.1"], "argument --lr: must be a finite number > 0"),
    ("regression", ["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    ("regression", ["--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
    ("regression", ["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    ("derivatives", ["--order", "-1"], "argument --order: must be from 0 to 12, got -1"),
    ("derivatives", ["--order", "13"], "argument --order: must be from 0 to 12, got 13"),
    ("derivatives", ["--order", "2.5"], "argument --order: invalid int value: '2.5'"),
    ("derivatives", ["--x", "nan"], "argument --x: must be a finite number, got nan"),
    ("derivatives", ["--x=-inf"], "argument --x: must be a finite number, got -inf"),
    ("derivatives", ["--x", "one"], "argument --x: invalid float value: 'one'"),
]


@pytest.mark.parametrize("name, argv, message", BAD_OPTIONS)
def test_bad_options_exit_with_usage_and_status_2(capsys, name, argv, message):
    with pytest.raises(SystemExit) as info:
        load(name).main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.err.startswith("usage: ") and message in captured.err
    assert captured.out == ""  # refused before any work


def test_the_smallest_regression_run_reports_the_error_of_what_it_returns(capsys):
    example = load("regression")
    params, mse = example.main(["--steps", "1", "--n", "1"])
    xs, ys = example.data(1, 0)
    assert mse == example.mse(params, xs, ys)  # of the returned parameters, not those before the step
    assert f"final mse {mse:.6f}" in capsys.readouterr().out


def test_order_zero_gives_the_value_only(capsys):
    result = load("derivatives").main(["--order", "0", "--x", "0.3"])
    assert len(result["nested"]) == len(result["taylor"]) == 1
    assert result["nested"][0] == pytest.approx(result["taylor"][0], rel=1e-15)
    assert "central difference" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["derivatives", "regression"])
def test_help_describes_every_option(capsys, name):
    with pytest.raises(SystemExit) as info:
        load(name).main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    options = [line.split()[0] for line in out.splitlines() if line.strip().startswith("--")]
    assert options and all(
        line.count("default") == 1
        for line in out.splitlines()
        if line.strip().startswith("--") and not line.strip().startswith("--help")
    )


@pytest.mark.parametrize(
    "argv, bad",
    [
        (["moons.py", "--steps", "1", "--n", "2", "--no-plot"], "--n=1"),
        (["regression.py", "--steps", "1", "--n", "1"], "--steps=0"),
        (["derivatives.py", "--order", "1"], "--order=-1"),
    ],
    ids=lambda a: a[0] if isinstance(a, list) else a,
)
def test_each_example_runs_as_a_new_user_runs_it(argv, bad):
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    script = [sys.executable, str(EXAMPLES / argv[0])]
    run = subprocess.run([*script, *argv[1:]], capture_output=True, text=True, env=env, cwd=EXAMPLES.parent)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    run = subprocess.run([*script, bad], capture_output=True, text=True, env=env, cwd=EXAMPLES.parent)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert f"error: argument {bad.split('=')[0]}: must be" in run.stderr
