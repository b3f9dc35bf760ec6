"""The halving-vs-grid benchmark runs end to end on the CPU suite's digits features and reports every cell."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "search_fidelity.py")


def test_search_fidelity_benchmark_on_the_cpu_suite(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("search_fidelity", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
