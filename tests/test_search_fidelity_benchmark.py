"""The halving-vs-grid benchmark runs end to end on the CPU suite's digits features and reports every cell."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "search_fidelity.py")


def _bench():
    spec = importlib.util.spec_from_file_location("search_fidelity", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_search_fidelity_benchmark_on_the_cpu_suite(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "cells.json"
    argv = ["--quick", "--sources", "cpu", "--epochs", "9", "--repeats", "2", "--cpu-data", str(tmp_path / "data"),
            "--json", str(out)]
    assert bench.main(argv) == 0
    assert {"digits_raw.npz", "digits_rff.npz"} <= {p.name for p in (tmp_path / "data").iterdir()}
    cells = json.loads(out.read_text())
    assert [(c["source"], c["row"]) for c in cells] == [
        ("digits raw (cpu suite)", "none"),
        ("digits raw (cpu suite)", "sea"),
    ]
    none, sea = cells
    assert none["configs"] == 4 and sea["configs"] == 8  # the small grid: lr x wd (x eta)
    assert none["rungs"] == sea["rungs"] == [3, 9]  # E/3, E for 3-8 configurations
    for c in cells:
        assert c["timed_runs"] == [2, 2]  # sub-second searches: timed by the faster of 2 runs
        assert 0 < c["grid_search_s"] < c["grid_s"] and 0 < c["halving_search_s"] < c["halving_s"]
        assert math.isclose(c["speedup"], c["grid_search_s"] / c["halving_search_s"])
        assert math.isclose(c["cell_speedup"], c["grid_s"] / c["halving_s"])
        assert math.isclose(c["diff"], c["halving_test"] - c["grid_test"])
        assert 0 < c["refit_train_s"] < c["grid_s"] - c["grid_search_s"]  # the refit is outside the search's clock
        # the small grid's 4 or 8 configurations fit one K-stack: rungs 3, 9 train all, then ceil(n / 3) of them
        survivors = math.ceil(c["configs"] / 3)
        assert math.isclose(c["config_epochs_ratio"], c["configs"] * 9 / (c["configs"] * 3 + survivors * 6))
        assert math.isclose(c["stack_epochs_ratio"], 1.0)
        assert (c["grid_hp"] == c["halving_hp"]) == c["same_config"]
        assert c["same_config"] is False or (c["diff"] == 0 and c["p"] in (None, 1.0))
        assert c["pass"] == (c["speedup"] >= 3 and (c["p"] is None or c["p"] >= 0.05))
    table = capsys.readouterr().out
    assert "| digits raw (cpu suite) | sea   | 8" in table and "cells pass" in table
    g, h = sum(c["grid_search_s"] for c in cells), sum(c["halving_search_s"] for c in cells)  # the per-source table
    assert re.search(rf"\| digits raw \(cpu suite\) \| {g:.2f} +\| {h:.2f} +\| {g / h:.2f}x +\|", table)


def _digits_none_large(tmp_path):
    """The benchmark module, a plugin host, the CPU suite's digits source and the large grid's ``none`` values."""
    from featbench.manager import load_plugins

    bench = _bench()
    host = load_plugins(entry_points=[])
    (label, files), *_ = bench.sources(str(tmp_path), True, 0, host, ("cpu",), str(tmp_path / "data"))
    return bench, host, label, files, {k: v for k, v in bench.GRIDS["large"].items() if "." not in k}


def test_trainer_time_and_schedule_arithmetic_match_the_runner(tmp_path):
    """The records' trainer seconds lie inside the search's clock, and ``schedule_work`` counts what the runner
    trained (the stack-cost model's input) for the grid and for halving, in stacks that do not divide N."""
    from featbench.training.halving import DEFAULT_KEEP

    bench, host, label, files, grid = _digits_none_large(tmp_path)
    for search in ("grid", "halving"):
        _, search_s, _, _, rungs, n, work = bench.run_cell(files, "none", grid, search, host, 9, 2, stack_size=40)
        assert n == 144 and rungs == ((1, 3, 9) if search == "halving" else ())
        assert all(map(math.isclose, work[:2], bench.schedule_work(n, 9, rungs, DEFAULT_KEEP, 40)))
        assert 0 < work[2] < search_s
    assert bench.schedule_work(144, 9, (), DEFAULT_KEEP, 40) == (144 * 9, 4 * 9)
    # 144 -> 48 -> 16 configurations: 4 + 2 + 1 stacks of 40
    assert bench.schedule_work(144, 9, (1, 3, 9), DEFAULT_KEEP, 40) == (144 + 48 * 2 + 16 * 6, 4 + 2 * 2 + 6)


def test_stack_cost_fits_the_trainer_seconds(tmp_path):
    bench, host, label, files, grid = _digits_none_large(tmp_path)
    r = bench.stack_cost(label, files, grid, host, 3, 2, sizes=(16, 64), repeats=1)
    assert r["configs"] == 144 and r["stack_epochs"] == [9 * 3, 3 * 3] and r["config_epochs"] == [144 * 3] * 2
    a, b = r["a_ms"] / 1e3, r["b_ms"] / 1e3  # two sizes, two unknowns: the fit is exact
    for s, c, t in zip(r["stack_epochs"], r["config_epochs"], r["trainer_s"]):
        assert math.isclose(a * s + b * c, t, rel_tol=1e-6)
    assert math.isclose(r["shared_of_64"], a / (a + 64 * b))
    assert r["stack"] == 64  # the runner's default --stack-size
    g_c, g_s = bench.schedule_work(144, 3, (), 1 / 3, 64)
    h_c, h_s = bench.schedule_work(144, 3, tuple(r["rungs"]), 1 / 3, 64)
    assert math.isclose(r["model_ratio"], (a * g_s + b * g_c) / (a * h_s + b * h_c))
    assert "a: ms per stack-epoch" in bench._stack_cost_table([r])
