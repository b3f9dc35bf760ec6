"""Suite files and flags build the same RunSpec; bad settings are clear errors."""

from __future__ import annotations

import glob
import os

import pytest

from featbench.bench.spec import AugRow, RunSpec, check, load_suite
from featbench.errors import ConfigError, UnknownNameError
from featbench.run import build_spec

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return str(path)


def test_suite_file_equals_the_flags(tmp_path):
    path = _write(tmp_path, """
aug: none,sea
features: [a.npz, "b.npz,c.npz"]
hp: {lr: [0.5, 2], eta: 0.8}
batch-size: 64
epochs: 7
seeds: 3
val_fraction: 0.25
format: markdown
""")
    from_file = build_spec({}, path)
    d = str(tmp_path)
    from_flags = build_spec({"aug": "none,sea", "features": [f"{d}/a.npz", f"{d}/b.npz,{d}/c.npz"],
                             "hp": ["lr=0.5,2", "eta=0.8"], "batch_size": 64, "epochs": 7, "seeds": 3,
                             "val_fraction": 0.25, "format": "markdown"})
    assert from_file == from_flags
    assert from_file.features == ((f"{d}/a.npz",), (f"{d}/b.npz", f"{d}/c.npz"))  # relative to the suite file
    assert from_file.hp == {"lr": (0.5, 2.0), "eta": (0.8,)}
    assert from_file.seed_list == [0, 1, 2]


def test_flags_override_the_file_and_variants_parse(tmp_path):
    path = _write(tmp_path, """
aug: [none, {label: sea-a0, augmenter: sea, hp: {alpha: 0}}]
epochs: 7
out: runs/x
""")
    spec = build_spec({"epochs": 3}, path)
    assert spec.epochs == 3 and spec.out == "runs/x"
    assert spec.aug == ("none", AugRow("sea-a0", "sea", {"alpha": (0.0,)}))
    assert [r.label for r in spec.rows(["none", "sea"])] == ["none", "sea-a0"]


def test_combos_all_gives_the_15_subsets_in_the_papers_order():
    spec = check(RunSpec(datasets=("cifar100",), backbones=("S", "M", "B", "C"), combos=("all",)))
    got = ["+".join(s) for s in spec.backbone_sets()]
    assert got == ["S", "M", "B", "C", "S+M", "S+B", "S+C", "M+B", "M+C", "B+C",
                   "S+M+B", "S+M+C", "S+B+C", "M+B+C", "S+M+B+C"]
    assert check(RunSpec(datasets=("x",), backbones=("S", "M"))).backbone_sets() == [("S", "M")]
    assert check(RunSpec(datasets=("x",), backbones=("S", "M"), combos=("singles",))).backbone_sets() == [("S",), ("M",)]
    assert check(RunSpec(datasets=("x",), backbones=("S", "M"), combos=("M", "S+M"))).backbone_sets() == [("M",), ("S", "M")]


@pytest.mark.parametrize("text,error,match", [
    ("epochz: 3", UnknownNameError, "unknown setting.*epochz.*did you mean 'epochs'"),
    ("epochs: three", ConfigError, "epochs must be a whole number"),
    ("epochs: 0", ConfigError, "--epochs 0 must be at least 1"),
    ("hp: {lr: [0.5, fast]}", ConfigError, "hp.lr: 'fast' is not a number"),
    ("hp: [lr]", ConfigError, "hp must be a mapping"),
    ("aug: [{augmenter: sea, colour: red}]", ConfigError, "is not {label, augmenter, hp}"),
    ("aug: [none, none]", None, None),
    ("datasets: [d]", ConfigError, "--dataset needs --backbones"),
    ("datasets: [d]\nbackbones: [S]\ncombos: [S+X]", UnknownNameError, "unknown backbone in --combos 'X'"),
    ("datasets: [d]\nbackbones: [S, M]\nfeature_files: {d: {S: s.npz}}", ConfigError, "feature_files.d has no file for backbone\\(s\\) M"),
    ("format: html", UnknownNameError, "unknown output format 'html'"),
    ("executor: spark", UnknownNameError, "unknown executor 'spark'.*valid: local, ray"),
    ("ray_address: 10.0.0.1:6379", ConfigError, "--ray-address 10.0.0.1:6379 is given but the executor is local"),
    ("executor: ray\nthreads: 0", ConfigError, "--threads 0 must be at least 1"),
    ("executor: ray\nray_gpus: 0", ConfigError, "--ray-gpus 0.0 must be above 0"),
    ("executor: ray\nray_retries: -1", ConfigError, "--ray-retries -1 must be >= 0"),
    ("layout: wide", UnknownNameError, "unknown table layout"),
    ("- a\n- b", ConfigError, "does not hold a mapping"),
    ("aug: [none\n", ConfigError, "is not valid YAML"),
])
def test_bad_suites(tmp_path, text, error, match):
    path = _write(tmp_path, text)
    if error is None:  # parsed fine; the duplicate row is refused when rows are resolved
        with pytest.raises(ConfigError, match="listed twice"):
            build_spec({}, path).rows(["none"])
        return
    with pytest.raises(error, match=match):
        build_spec({}, path)


def test_executor_settings_from_the_file_and_the_flags(tmp_path):
    path = _write(tmp_path, """
executor: ray
ray-address: head:6379
threads: 2
ray_gpus: 0.5
ray_retries: 1
""")
    spec = build_spec({}, path)
    assert (spec.executor, spec.ray_address, spec.threads, spec.ray_gpus, spec.ray_retries) == ("ray", "head:6379", 2, 0.5, 1)
    assert build_spec({"ray_address": "other:1", "threads": 4}, path).ray_address == "other:1"
    assert RunSpec().threads is None and RunSpec().executor == "local"


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match="suite file not found"):
        build_spec({}, str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(BENCHMARKS, "*.yaml"))))
def test_shipped_suites_are_valid(path):
    spec = check(RunSpec(**load_suite(path)))
    assert spec.description, "every shipped suite says what it is"
    assert spec.datasets or spec.features
