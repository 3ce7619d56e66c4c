"""The benchmark scripts run at tiny sizes and their correctness checks hold.

Timings are not asserted here (they belong to the benchmarks); what is checked
is that every system computes the same training trajectory and that the
reports are complete.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_moons_benchmark_agrees_with_micrograd_and_reports(tmp_path):
    moons = load("moons")
    result = moons.main(
        [
            "--steps",
            "1",
            "--fast-steps",
            "2",
            "--repeats",
            "1",
            "--check-steps",
            "2",
            "--n",
            "16",
            "--out",
            str(tmp_path),
        ]
    )
    rows = {r["system"]: r for r in result["rows"]}
    assert set(rows) == set(moons.SYSTEMS)
    for name in moons.SYSTEMS[1:]:  # numpy and the vmap rows too
        assert rows[name]["max_loss_diff"] <= 1e-9
    assert rows["fgrad-binary"]["nodes_per_step"] <= rows["micrograd"]["nodes_per_step"]
    assert rows["fgrad-fused"]["nodes_per_step"] < rows["fgrad-binary"]["nodes_per_step"]
    saved = json.loads((tmp_path / "moons.json").read_text())
    assert saved["rows"][0]["system"] == "micrograd"
    assert "| fgrad-fused |" in (tmp_path / "moons.md").read_text()


def test_moons_agreement_check_catches_a_wrong_trajectory(monkeypatch):
    moons = load("moons")
    xs, ys = moons.moons(12, noise=0.1, seed=0)
    real = moons.run_system

    def off_by_a_little(name, *args):
        seconds, losses = real(name, *args)
        return seconds, [v + 1e-6 for v in losses] if name == "fgrad-fused" else losses

    monkeypatch.setattr(moons, "run_system", off_by_a_little)
    with pytest.raises(SystemExit, match="fgrad-fused: loss trajectory differs"):
        moons.check_agreement(0, xs, ys, steps=2)


def test_micrograd_weights_are_copied_in_order():
    moons = load("moons")
    mg = moons.micrograd_model(7)
    model = moons.fgrad_model_from(mg, "binary")
    import fgrad as fg

    assert fg.tree_leaves(model) == [p.data for p in mg.parameters()]
    assert model([0.3, -0.2]) == pytest.approx(mg([0.3, -0.2]).data, abs=1e-15)


def test_scaling_benchmark_reports_time_and_memory_per_node(tmp_path):
    scaling = load("scaling")
    result = scaling.main(["--sizes", "100", "1000", "--repeats", "1", "--out", str(tmp_path)])
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        assert row["nodes"] >= row["n"]
        assert row["ns_per_node"] > 0 and row["peak_bytes_per_node"] > 0
    assert (tmp_path / "scaling.md").exists()


def test_jitted_training_traces_once_and_matches_eager_training():
    moons = load("moons")
    xs, ys = moons.moons(20, noise=0.1, seed=1)
    model = moons.fgrad_model_from(moons.micrograd_model(1), "fused")
    run = moons.fgrad_jit_trainer("fused")
    _, losses = run(model, xs, ys, 4)
    assert run.step.cache_info().traces == 1  # no guard on the data: no retracing
    _, eager = moons.fgrad_trainer("fused")(model, xs, ys, 4)
    assert losses == eager


def test_derivatives_benchmark_checks_agreement_and_reports(tmp_path):
    bench = load("derivatives")
    result = bench.main(["--order", "6", "--repeats", "1", "--out", str(tmp_path)])
    assert result["order"] == 6 and result["taylor_s"] > 0 and result["nested_grad_s"] > 0
    assert "Taylor mode" in (tmp_path / "derivatives.md").read_text()


def test_overhead_benchmark_reports_every_part():
    pytest.importorskip("numpy")
    result = load("overhead").main(["--number", "2", "--repeats", "1"])
    assert set(result) == {"step", "flatten and key", "compiled code", "rebuild", "eager sgd update + apply"}
    assert all(us > 0 for us in result.values())
    result = load("overhead").main(["--number", "1", "--repeats", "1", "--width", "4", "--optimizer", "adam"])
    assert set(result) == {"step", "flatten and key", "compiled code", "rebuild", "eager adam update + apply"}
    assert all(us > 0 for us in result.values())


def test_mlp_scaling_benchmark_agrees_with_numpy_and_reports(tmp_path):
    pytest.importorskip("numpy")
    bench = load("mlp_scaling")
    result = bench.main(
        ["--widths", "4", "--batches", "8", "--scalar", "4", "--steps", "1", "--repeats", "1"]
        + ["--out", str(tmp_path)]
    )
    rows = result["rows"]
    assert [r["kind"] for r in rows] == ["vmap step", "vmap step (adam)", "scalar jit"]
    for r in rows:
        assert "error" not in r, r
        assert r["compile_s"] > 0 and r["peak_mb"] > 0 and r["ms"] > 0
    assert rows[0]["numpy_ms"] > 0 and rows[1]["numpy_ms"] > 0
    table = (tmp_path / "mlp_scaling.md").read_text()
    assert "| vmap step | 4 | 8 |" in table and "| vmap step (adam) | 4 | 8 |" in table


def test_mlp_scaling_cell_refuses_a_step_that_disagrees_with_numpy(monkeypatch):
    pytest.importorskip("numpy")
    bench = load("mlp_scaling")
    real = bench._numpy_step

    def off(model, xs, ys, optimizer="sgd"):
        step = real(model, xs, ys, optimizer)
        return lambda: step() + 1e-6

    monkeypatch.setattr(bench, "_numpy_step", off)
    for optimizer in ("sgd", "adam"):
        with pytest.raises(AssertionError, match="vs numpy"):
            bench.cell_vmap(4, 8, steps=1, repeats=1, optimizer=optimizer)


def test_chunked_benchmark_agrees_and_reports(tmp_path):
    pytest.importorskip("numpy")
    chunked = load("chunked")
    result = chunked.main(
        ["--sizes", "600", "--chunk", "200", "--steps", "1", "--repeats", "1", "--out", str(tmp_path)]
    )
    rows = result["rows"]
    assert [r["chunk"] for r in rows] == [None, 200]
    assert rows[1]["ratio"] > 0 and rows[1]["value"] == pytest.approx(rows[0]["value"], rel=1e-12)
    assert "| 600 | 200 |" in (tmp_path / "chunked.md").read_text()
