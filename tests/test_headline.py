"""The headline command end to end: data sets named, fetched through a mirror, verified, unpacked, extracted,
trained and compared with the baseline; and the embedded default's fair comparison."""

from __future__ import annotations

import json
import os

from cli_util import cli_env, featbench
from fetch_util import Loopback, caltech101_archive, cifar10_archive, dtd_archive, registry_for, tree

from featbench.cli import main


def test_run_fetches_verifies_unpacks_and_compares(tmp_path):
    archives = {
        "cifar-10-python.tar.gz": cifar10_archive(),
        "dtd-r1.0.1.tar.gz": dtd_archive(),
        "caltech-101.zip": caltech101_archive(),
    }
    registry = registry_for(
        archives,
        str(tmp_path / "registry.yaml"),
        caltech101={"train_per_class": 5, "val_per_class": 2},
        cifar10={"val": 0.2},
    )
    data, cache, out = tmp_path / "data", tmp_path / "cache", tmp_path / "out"
    args = [
        "--registry",
        registry,
        "run",
        "--aug",
        "sea",
        "--backbones",
        "timm:test_resnet",
        "--dataset",
        "cifar10,dtd,caltech101",
        "--image-size",
        "32",
        "--epochs",
        "3",
        "--data-root",
        str(data),
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
    ]
    with Loopback(archives) as server:
        proc = featbench(*args, env=cli_env(FEATBENCH_MIRROR=server.url))
        assert proc.returncode == 0, proc.stderr
        assert sorted(name for name, _ in server.requests) == sorted(archives)  # each archive fetched once
        plan = [line for line in proc.stderr.splitlines() if line.startswith("featbench: to fetch:")]
        assert len(plan) == 1 and "3 data sets (cifar10" in plan[0] and "free at" in plan[0]
        lines = proc.stdout.splitlines()
        assert [line.split()[0] for line in lines[2:5]] == ["none", "sea", "Gain"], proc.stdout
        assert all(col in lines[0] for col in ("cifar10", "dtd", "caltech101"))
        assert "grid quick" in proc.stdout
        # unpacked in torchvision's layouts, archives gone, nothing beside the data root
        assert (data / "cifar-10-batches-py" / "test_batch").is_file() and (
            data / "dtd" / "dtd" / "labels" / "val1.txt"
        ).is_file()
        assert (data / "caltech101" / "101_ObjectCategories" / "accordion").is_dir()
        assert not any(p.startswith((".downloads", ".featbench")) or "/.featbench-unpack" in p for p in tree(str(data)))
        assert sorted(os.listdir(tmp_path)) == ["cache", "data", "out", "registry.yaml"]
        settings = json.load(open(out / "results.json"))["settings"]
        assert settings["grid"] == "quick" and settings["no_baseline"] is False

        # offline, everything already here: same table, not one connection
        again = featbench(*args, env=cli_env(FEATBENCH_MIRROR=server.url, FEATBENCH_OFFLINE="1"))
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == len(archives) and again.stdout == proc.stdout


def test_offline_run_of_the_paper_comparison_prints_the_plan_and_writes_nothing(tmp_path):
    env = cli_env(FEATBENCH_CACHE=str(tmp_path / "cache"), FEATBENCH_DATA=str(tmp_path / "data"), FEATBENCH_OFFLINE="1")
    env.pop("FEATBENCH_MIRROR", None)
    proc = featbench(
        "run", "--aug", "sea", "--backbones", "S,M,B,C", "--out", str(tmp_path / "out"), env=env, cwd=str(tmp_path)
    )
    err = proc.stderr.splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(err) == 2, proc.stderr
    for name in ("aircraft", "birds", "caltech101", "cifar10", "cifar100", "dtd", "flowers", "food", "pets", "sun397"):
        assert f"{name} " in err[0]
    assert "10 data sets" in err[0] and "3 checkpoints (S 102.5 MB, M size unknown, B 570.0 MB)" in err[0]
    assert "not fetchable by script: data set cars, checkpoint C" in err[0]
    assert err[1].startswith("featbench: error: 13 missing input(s) cannot be fetched offline")
    assert os.listdir(tmp_path) == []


def test_embedded_default_compares_sea_with_the_baseline_searched_on_validation(tmp_path, capsys):
    from featbench.bench.store import Store

    assert main(["run", "--aug", "sea", "--epochs", "5", "--quiet", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert [line.split()[0] for line in text.splitlines()[2:5]] == ["none", "sea", "Gain"]
    assert "searched on validation over grid quick (the paper's: --grid paper)" in text
    with Store(str(tmp_path), create=False) as store:
        cells = {c.row: c for c in store.cells(store.planned_cells(store.run(None).id))}
    assert cells["none"].grid_size == 4 and cells["sea"].grid_size == 12  # 2 lr x 2 wd (x eta 0, 0.4, 0.8)
    # sea's grid holds eta = 0, which trains exactly the baseline: its chosen configuration cannot do worse on val
    assert cells["sea"].val_value >= cells["none"].val_value
