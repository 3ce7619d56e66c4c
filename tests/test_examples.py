"""Every example runs, with small sizes, and does what it says."""

from __future__ import annotations

import importlib.util
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
