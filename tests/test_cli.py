"""The command line, called in-process through main([...])."""

from __future__ import annotations

import json
import os

import pytest

from featbench.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_valid_json_with_both_rows(capsys, feature_file, tmp_path):
    code, out, err = run(capsys, "run", "--aug", "none,sea", "--features", feature_file, "--hp", "eta=0.8", "--epochs", "3",
                         "--format", "json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads(out)
    rows = {r["augmenter"]: r for r in data["results"]}
    assert set(rows) == {"none", "sea"}
    for r in rows.values():
        assert r["features"] == "blobs" and r["metric"] == "top1" and 0 <= r["value"] <= 100
        assert r["seeds"] == [0] and r["seconds"] > 0 and r["std"] is None
    assert rows["sea"]["hp"]["eta"] == 0.8 and "eta" not in rows["none"]["hp"]
    assert data["versions"]["featbench"] and data["versions"]["torch"]
    assert set(os.listdir(tmp_path / "o")) == {"results.json", "featbench.sqlite", "table.json"}
    from featbench.bench.store import Store

    with Store(str(tmp_path / "o"), create=False) as store:
        assert len(store.cells(store.planned_cells(store.run().id))) == 2


def test_grid_search_seeds_and_table_formats(capsys, feature_file):
    code, out, err = run(capsys, "run", "--aug", "none,sea", "--features", feature_file, "--hp", "lr=0.5,2", "--epochs", "2",
                         "--seeds", "2", "--format", "markdown", "--quiet")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("| augmenter") and "blobs" in lines[0] and "Avg" in lines[0]
    assert any(line.startswith("| sea ") and "±" in line for line in lines)
    assert any("Gain (sea - none)" in line for line in lines)
    code, out, _ = run(capsys, "run", "--aug", "none,sea", "--features", feature_file, "--epochs", "1", "--format", "latex", "--quiet")
    assert code == 0 and "\\toprule" in out
    code, out, _ = run(capsys, "run", "--aug", "none,sea", "--features", feature_file, "--epochs", "1", "--format", "csv", "--quiet")
    lines = out.splitlines()  # issue 15: numbers in their own columns (the table as printed is csv-wide)
    assert code == 0 and lines[0] == "backbones,augmenter,dataset,metric,mean,std,seeds,gain,p,test,significant"
    assert [line.split(",")[1:3] for line in lines[1:]] == [["none", "blobs"], ["sea", "blobs"], ["none", "Avg"], ["sea", "Avg"]]


def test_plugins_json_lists_builtins(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    items = {(i["kind"], i["name"]): i for i in json.loads(out)["plugins"]}
    assert code == 0
    assert {("augmenter", "none"), ("augmenter", "sea"), ("loss", "ce"), ("loss", "hinge")} <= set(items)
    assert items[("augmenter", "sea")]["distribution"] == "featbench"
    assert items[("augmenter", "sea")]["hparams"]["eta"]["default"] == 0.8


@pytest.mark.parametrize("argv,match", [
    (["run", "--aug", "seaa"], "unknown augmenter 'seaa' (did you mean 'sea'"),
    (["run", "--loss", "hinj"], "unknown loss 'hinj'"),
    (["run", "--hp", "etta=1"], "unknown hyper-parameter 'etta' (did you mean 'eta'"),
    (["run", "--hp", "lr=-1"], "lr must be > 0"),
    (["run", "--hp", "lr"], "malformed --hp 'lr'"),
    (["run", "--epochs", "0"], "--epochs 0 must be at least 1"),
    (["run", "--batch-size", "0"], "--batch-size 0 must be at least 1"),
    (["run", "--format", "xml"], "unknown output format 'xml'"),
    (["run", "--features", "/nonexistent/x.npz"], "feature file not found"),
    (["run", "--grid", "nope"], "unknown grid 'nope'"),
])
def test_bad_input_gives_one_line_error_and_exit_2(capsys, argv, match, feature_file):
    if "--features" not in argv:
        argv = argv + ["--features", feature_file]
    code, out, err = run(capsys, *argv, "--epochs" if "--epochs" not in argv else "--seed", "1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featbench: error: ") and match in lines[0], err
    assert "Traceback" not in err and out == ""


def test_unwritable_output_directory_fails_before_any_training(capsys, feature_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run(capsys, "run", "--features", feature_file, "--epochs", "1", "--out", str(blocker / "sub"))
    assert code == 2 and "cannot write to --out" in err and "[1/" not in err


def test_registry_flag_reaches_the_backbone_catalog(capsys, tmp_path):
    import yaml

    from featbench.config import load_registry, registry_path

    reg = load_registry()
    mine = {**reg, "backbones": {**reg["backbones"], "S2": {**reg["backbones"]["S"], "doc": "my own copy of S"}}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(mine))
    assert main(["--registry", str(path), "plugins", "--json"]) == 0
    listed = {(p["kind"], p["name"]): p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed[("backbone", "S2")]["summary"].startswith("my own copy of S")
    assert os.environ.get("FEATBENCH_REGISTRY") is None and registry_path() != str(path)  # restored after the command
    assert main(["plugins", "--json"]) == 0
    assert ("backbone", "S2") not in {(p["kind"], p["name"]) for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert main(["--registry", str(tmp_path / "missing.yaml"), "plugins"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "registry file not found" in err and "missing.yaml" in err
