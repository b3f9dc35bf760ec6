"""The L-BFGS linear probe: scikit-learn's solution, the CLIP-style sweep, and its rows in the tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featbench.records import REFIT, SEARCH
from featbench.training import probe


@pytest.fixture(scope="module")
def digits():
    from runner_util import single_thread

    from featbench.inputs.demo import digits_features

    undo = single_thread()
    yield digits_features(seed=0)
    undo()


@pytest.mark.parametrize("wd", [1e-4, 1e-3, 1e-2])
def test_matches_scikit_learn_logistic_regression_at_equal_regularisation(digits, wd):
    """sklearn minimises C sum_i CE_i + 1/2 ||W||^2; the probe mean_i CE_i + wd/2 ||W||^2: C = 1 / (n wd)."""
    from sklearn.linear_model import LogisticRegression

    fs = digits
    n = len(fs.train_y)
    f = probe.fit(fs.train_x, fs.train_y, fs.num_classes, wd)
    clf = LogisticRegression(C=1.0 / (n * wd), fit_intercept=False, max_iter=5000, tol=1e-8).fit(fs.train_x, fs.train_y)
    ours = 100 * float((probe._predict(f.weight, fs.test_x) == fs.test_y).mean())
    theirs = 100 * clf.score(fs.test_x, fs.test_y)
    assert abs(ours - theirs) <= 0.2, (ours, theirs)
    scale = float(np.abs(clf.coef_).max())
    assert (
        float(np.abs(f.weight.numpy() - clf.coef_).max()) <= 2e-3 * scale
    )  # the same minimiser, not just the same accuracy


def test_refinement_is_quarter_decades_between_the_neighbours():
    got = probe.refine(1e-3)
    assert len(got) == 6 and all(1e-4 < v < 1e-2 and not math.isclose(v, 1e-3) for v in got)
    assert np.allclose(np.diff(np.log10(sorted([*got, 1e-3]))), 0.25)
    assert set(probe.COARSE) <= set(probe.candidates())


def test_sweep_picks_the_best_validation_score_and_refits_on_train_and_val(digits):
    coarse = (1e-4, 1e-2, 1.0)
    outs = probe.run(digits, seed=0, coarse=coarse)
    search, refit = outs[:-1], outs[-1]
    assert [o.hp["wd"] for o in search[:3]] == list(coarse) and len(search) == 3 + 6
    assert refit.val is None and refit.correct is not None and all(o.val is not None for o in search)
    best = max(search, key=lambda o: (o.val, -o.hp["wd"]))
    assert refit.hp == best.hp
    best_coarse = max(search[:3], key=lambda o: (o.val, -o.hp["wd"])).hp["wd"]
    assert all(best_coarse / 10 < o.hp["wd"] < best_coarse * 10 for o in search[3:])
    # the refit is the probe on train+val (no val split here: the whole training set) with the chosen wd
    f = probe.fit(digits.train_x, digits.train_y, digits.num_classes, refit.hp["wd"])
    assert np.array_equal(refit.correct, probe._predict(f.weight, digits.test_x) == digits.test_y)
    assert refit.test == pytest.approx(100 * refit.correct.mean())


def test_probe_row_and_both_gain_rows_through_the_runner(tmp_path):
    from runner_util import feature_grid, host, single_thread

    from featbench.bench.driver import Runner
    from featbench.bench.spec import RunSpec, check
    from featbench.bench.store import Store
    from featbench.reporting.tables import build, render, to_json_data

    undo = single_thread()
    try:
        files = feature_grid(str(tmp_path), datasets=("d1",), backbones=("A",), val=30)
        spec = check(
            RunSpec(
                aug=("none", "sea"),
                datasets=("d1",),
                backbones=("A",),
                feature_files=files,
                hp={"lr": (1.0,), "eta": (0.4,)},
                epochs=3,
                batch_size=32,
                probe="lbfgs",
            )
        )
        with Store(str(tmp_path / "run")) as store:
            outcome = Runner(spec, host(), store, device="cpu").run()
            cells = store.cells(list(outcome.cell_keys))
            (p,) = [c for c in cells if c.row == "lbfgs"]
            recs = store.configs(store.cell_config_keys(p.key))
        with Store(str(tmp_path / "run")) as store:
            again = Runner(spec, host(), store, device="cpu").run()
    finally:
        undo()
    assert [c.row for c in cells] == ["none", "sea", "lbfgs"]
    phases = [r.phase for r in recs.values()]
    assert phases.count(REFIT) == 1 and phases.count(SEARCH) == len(probe.COARSE) + 6
    assert p.grid_size == len(probe.COARSE) + 6 and p.hp == {"wd": p.hp["wd"]} and p.val_value is not None
    text = render(build(cells), "table")
    assert "Gain (sea - none)" in text and "Gain (sea - lbfgs)" in text
    data = to_json_data(build(cells))
    assert data["tables"][0]["gain_vs_probe"]["vs"] == "lbfgs"
    assert {g["vs"] for g in data["gains"]} == {"none", "lbfgs"}
    assert again.configs_trained == 0 and again.cells_skipped == 3
