"""``featbench run --search halving`` and ``--probe lbfgs`` from the command line, and their bad values."""

from __future__ import annotations

import pytest
from runner_util import feature_grid, single_thread
from test_cli import run as _main


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    undo = single_thread()
    yield
    undo()


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_search")
    return feature_grid(str(d), datasets=("d1",), backbones=("A",), n_train=120, n_test=80, dim=8, val=30)["d1"]["A"]


def test_probe_prints_both_gain_rows(features, tmp_path, capsys):
    code, out, _ = _main(
        capsys,
        "run",
        "--aug",
        "none,sea",
        "--features",
        features,
        "--hp",
        "lr=1",
        "--hp",
        "eta=0.4",
        "--epochs",
        "3",
        "--probe",
        "lbfgs",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    )
    assert code == 0
    lines = out.splitlines()
    assert [l.split()[0] for l in lines if l.split()[:1] in (["none"], ["sea"], ["lbfgs"])] == ["none", "sea", "lbfgs"]
    assert any(l.startswith("Gain (sea - none)") for l in lines) and any(
        l.startswith("Gain (sea - lbfgs)") for l in lines
    )
    assert "lbfgs = L-BFGS logistic regression" in out


def test_halving_footnote_and_report(features, tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    code, out, _ = _main(
        capsys,
        "run",
        "--aug",
        "sea",
        "--features",
        features,
        "--hp",
        "lr=0.5,1,2",
        "--hp",
        "eta=0.2,0.4,0.8",
        "--epochs",
        "9",
        "--search",
        "halving",
        "--halving-rungs",
        "3",
        "--out",
        out_dir,
        "--quiet",
    )
    assert code == 0 and "successive halving (keep 0.333 per rung, rungs at epochs 3,9)" in out
    code, again, _ = _main(capsys, "report", out_dir)
    assert code == 0 and again == out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--search", "random"], "unknown search 'random'"),
        (["--halving-keep", "1.5"], "--halving-keep 1.5 must be between 0 and 1"),
        (["--halving-rungs", "5,3"], "--halving-rungs 5,3 must be increasing epochs"),
        (["--halving-rungs", "3,x"], "halving_rungs must be whole numbers"),
        (["--probe", "svm"], "unknown probe 'svm'"),
    ],
)
def test_bad_search_and_probe_values_are_one_line(argv, message, capsys):
    code, out, err = _main(capsys, "run", "--aug", "none", "--epochs", "9", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("featbench: error: ") and message in err


def test_suite_files_take_the_same_settings(tmp_path):
    from featbench.bench.spec import build_spec

    path = tmp_path / "suite.yaml"
    path.write_text(
        "aug: [none, sea]\nepochs: 30\nsearch: halving\nhalving_keep: 0.5\nhalving-rungs: [3, 10]\nprobe: lbfgs\n"
    )
    spec = build_spec({}, str(path))
    assert (spec.search, spec.halving_keep, spec.halving_rungs, spec.probe) == ("halving", 0.5, (3, 10, 30), "lbfgs")
    assert build_spec({"halving_rungs": "3,10"}, str(path)).halving_rungs == (3, 10, 30)


def test_the_halving_footnote_names_explicit_or_default_rungs():
    from featbench.reporting.tables import _halving_note

    assert _halving_note({"search": "grid"}) == ""
    assert "keep 0.5 per rung, rungs at epochs 5,30)" in _halving_note(
        {"search": "halving", "halving_rungs": [5, 30], "halving_keep": 0.5}
    )
    assert "the default rungs: E/3^k from at least E/9" in _halving_note({"search": "halving"})
