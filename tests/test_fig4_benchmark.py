"""The Fig. 4 direction benchmark runs end to end on a feature file and writes its table, JSON and plot."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import numpy as np
from method_utils import unit_blobs

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "fig4_directions.py")


def test_fig4_benchmark_on_a_feature_file(tmp_path):
    spec = importlib.util.spec_from_file_location("fig4_directions", SCRIPT)
    fig4 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig4)
    x, y = unit_blobs(n=90, d=8, C=3, seed=0)
    path = tmp_path / "f.npz"
    np.savez(path, train_x=x[:60], train_y=y[:60], test_x=x[60:], test_y=y[60:])
    out = tmp_path / "out"
    assert fig4.main(["--features", str(path), "--epochs", "2", "--batch-size", "32", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"fig4_directions.md", "fig4_directions.json", "fig4_directions.png"}
    data = json.loads((out / "fig4_directions.json").read_text())
    results = data["results"]
    assert sorted(results) == ["adv", "mixdir", "none", "rand", "sea", "sea_neg"]
    assert results["adv"]["etas"] == list(fig4.ADV_ETAS) and results["sea"]["etas"] == list(fig4.SHARED_ETAS)
    for r in results.values():
        assert len(r["mean"]) == len(r["etas"]) and all(math.isfinite(m) for m in r["mean"])
        assert r["mean"][0] == results["none"]["mean"][0]  # eta = 0 is the baseline run, bit for bit
    table = (out / "fig4_directions.md").read_text()
    assert all(f"| {name} |" in table for name in fig4.METHODS)
    assert (out / "fig4_directions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
