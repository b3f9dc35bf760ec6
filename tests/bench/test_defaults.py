"""The defaults that make a run a fair comparison: the baseline row, grid auto with off settings, the paper alias."""

from __future__ import annotations

import math

import pytest

from featbench.bench.spec import PAPER_DATASETS, AugRow, RunSpec, build_spec, resolve_grid, with_baseline
from featbench.config import load_registry
from featbench.training.grid import grid_values

REGISTERED = ["none", "sea", "mixup"]
#: each method's off setting (methods.md 12); mixup has none
OFF = {
    "sea": ("eta", 0.0),
    "sea_neg": ("eta", 0.0),
    "rand": ("eta", 0.0),
    "adv": ("eta", 0.0),
    "mixdir": ("eta", 0.0),
    "isda": ("lambda0", 0.0),
    "meada": ("phases", 0.0),
    "focal_con": ("eta_c", 0.0),
}


def test_the_baseline_is_trained_beside_the_augmenters_once():
    assert build_spec({"aug": "sea,mixup"}).aug == ("none", "sea", "mixup")
    assert build_spec({"aug": "sea,none"}).aug == ("sea", "none")
    assert build_spec({"aug": "all"}).aug == ("all",)
    assert build_spec({"aug": "sea", "no_baseline": True}).aug == ("sea",)
    spec = with_baseline(RunSpec(aug=(AugRow("plain", "none"), AugRow("sea", "sea"))))
    assert [r.label for r in spec.rows(REGISTERED)] == ["plain", "sea"]  # a row already trains the baseline


def test_no_baseline_flag_and_suite_key(tmp_path, capsys):
    from featbench.cli import main

    assert main(["run", "--aug", "sea", "--no-baseline", "--epochs", "1", "--hp", "eta=0.4", "--quiet"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    assert rows[0] == "sea" and "none" not in rows and "Gain" not in " ".join(rows)
    suite = tmp_path / "s.yaml"
    suite.write_text("aug: [sea]\n")
    assert build_spec({}, str(suite)).aug == ("sea",)  # a suite's rows are exactly the ones it lists
    assert build_spec({"aug": "sea"}, str(suite)).aug == ("none", "sea")  # rows given on the command line
    assert build_spec({}).aug == ("none", "sea")  # the default rows


@pytest.mark.parametrize(
    "flags, device, grid",
    [
        ({}, "cpu", "quick"),
        ({}, "cuda:0", "paper-auto"),
        ({"grid": "auto"}, "cuda", "paper-auto"),
        ({"grid": "paper"}, "cpu", "paper"),
        ({"hp": ["eta=0.4,0.8"]}, "cuda", None),
        ({"hp": ["eta=0.8"]}, "cpu", None),
        ({"aug": "none"}, "cuda", None),
        ({"aug": "sea", "no_baseline": True}, "cpu", "quick"),
    ],
)
def test_grid_auto_is_the_default_without_hp_values(flags, device, grid):
    assert resolve_grid(build_spec(flags), device).grid == grid


@pytest.mark.parametrize("grid", ["quick", "paper-auto", "paper"])
def test_every_methods_default_grids_hold_its_off_setting(grid):
    registry = load_registry()
    for method, (name, off) in OFF.items():
        assert off in grid_values(registry, grid, [method])[name], (grid, method)


def test_paper_auto_is_the_paper_grid_but_for_a_documented_meada_subset():
    registry = load_registry()
    for comp in registry["grids"]["paper"]:
        if comp not in ("doc", "meada"):
            assert registry["grids"]["paper-auto"][comp] == registry["grids"]["paper"][comp], comp
    full, auto = grid_values(registry, "paper", ["meada"]), grid_values(registry, "paper-auto", ["meada"])
    assert math.prod(len(v) for v in full.values()) == 576 and math.prod(len(v) for v in auto.values()) == 18
    assert all(set(v) <= set(full[k]) for k, v in auto.items())  # a subset of the paper's values
    assert "ME-ADA" in registry["grids"]["paper-auto"]["doc"]


def test_backbones_without_dataset_run_the_papers_eleven_and_paper_is_an_alias():
    assert build_spec({"backbones": "S"}).datasets == PAPER_DATASETS
    assert build_spec({"backbones": "S", "datasets": "digits,paper,cifar10"}).datasets == ("digits", *PAPER_DATASETS)
    assert len(PAPER_DATASETS) == 11


def test_paper_auto_takes_a_plugins_declared_paper_values():
    from featbench.api import HParam
    from featbench.training.grid import search_values

    class Outside:  # a third-party component that declares only a paper grid
        hparams = (HParam("p", 0.1, "drop rate", low=0.0, high=1.0, grids={"paper": (0.0, 0.1, 0.3)}),)

    registry = load_registry()
    assert search_values(registry, "paper-auto", [("outside", Outside)])["p"] == [0.0, 0.1, 0.3]
    assert "p" not in search_values(registry, "quick", [("outside", Outside)])
