"""Run options declared once: the spec's fields drive the flags, the suite keys and the coercion of values;
one hyper-parameter value parser for --hp, suite files and registry.yaml."""

from __future__ import annotations

import json

import attrs
import pytest
from runner_util import make_features

from featbench.bench.options import coerce
from featbench.bench.spec import RunSpec, check, load_suite, option_fields, parse_hp_mapping, suite_keys
from featbench.cli import build_parser, main
from featbench.errors import ConfigError
from featbench.training.grid import grid_values, parse_hp_args


def _run_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["run"]


def test_every_option_with_a_flag_is_a_flag_and_every_option_a_suite_key():
    dests = {a.dest for a in _run_parser()._actions}
    fields = option_fields()
    flagged = {n for n, (_, f) in fields.items() if f.metadata["featbench.flag"] is not None}
    assert flagged <= dests and {"ray_address", "ray_gpus", "ray_retries", "stack_size"} <= flagged
    assert {"feature_files", "plugins", "description"} == set(fields) - flagged
    assert set(fields) <= set(suite_keys().values())
    assert suite_keys()["max_heads"] == "stack_size" and suite_keys()["batch-size"] == "batch_size"


def test_values_are_coerced_from_the_annotations(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("epochs: '3'\nval_fraction: 1e-1\nray_gpus: 1\nquiet: true\nimage_size: 32\n")
    assert load_suite(str(path)) == {"epochs": 3, "val_fraction": 0.1, "ray_gpus": 1.0, "quiet": True, "image_size": 32}
    for text, match in (("quiet: 1", "quiet must be true or false"), ("workers: 1.5", "workers must be a whole number"),
                        ("ray_gpus: lots", "ray_gpus must be a number")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_suite(str(path))


def test_the_spec_is_built_from_its_concerns_and_read_by_option_name():
    spec = check(RunSpec(epochs=3, executor="ray", ray_gpus=0.5, cache_dir="c", format="csv"))
    assert (spec.compare.epochs, spec.compute.executor, spec.inputs.cache_dir, spec.output.format) == (3, "ray", "c", "csv")
    assert spec.executors["ray"].ray_gpus == 0.5 and spec.ray_gpus == 0.5
    again = attrs.evolve(spec, executor="local", ray_gpus=1.0)
    assert again.executor == "local" and again.epochs == 3 and again.ray_gpus == 1.0
    fields = option_fields()
    assert RunSpec(**{k: coerce(fields[k][1], v) for k, v in spec.to_json().items()}) == spec  # the record reads back
    with pytest.raises(TypeError, match="unexpected option 'epoch'"):
        RunSpec(epoch=3)


def test_one_hyper_parameter_parser_for_flags_suites_and_the_registry():
    from_flags = {k: tuple(v) for k, v in parse_hp_args(["cov=full,diag", "lr=1,2", "flag=x"]).items()}
    from_suite = parse_hp_mapping({"cov": ["full", "diag"], "lr": [1, "2"], "flag": "x"})
    registry = {"grids": {"g": {"isda": {"cov": ["full", "diag"], "lr": [1, 2.0], "flag": "x"}}}}
    from_registry = {k: tuple(v) for k, v in grid_values(registry, "g", ["isda"]).items()}
    assert from_flags == from_suite == from_registry == {"cov": ("full", "diag"), "lr": (1.0, 2.0), "flag": ("x",)}


def test_a_suite_can_set_a_choice_option(tmp_path, capsys):
    feats = make_features(str(tmp_path / "f.npz"), seed=0)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"aug: [isda]\nfeatures: [{feats}]\nepochs: 2\nbatch_size: 32\nhp: {{cov: [full], lambda0: [0.5]}}\n"
                     "format: json\nquiet: true\n")
    assert main(["run", "--config", str(suite)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["augmenter"] == "isda" and row["hp"]["cov"] == "full"
