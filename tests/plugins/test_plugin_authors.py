"""What a plugin author meets: the shipped contract checks (featbench.testing, `featbench check-plugin`) on an
outside distribution written from docs/writing-a-plugin.md (tests/plugins/outside_plugin) and on two plausible
wrong plugins (tests/plugins/wrong_plugins.py); plugin-owned grids; hyper-parameter bounds and listings; the messages for
disabled, doubly loaded and clashing plugins."""

from __future__ import annotations

import json
import os
import types
import warnings

import pytest
from cli_util import assert_clean_error, featbench
from plugin_install import subprocess_env, throwaway_install

from featbench.api import FeatureAugmenter, HParam, declared_grid, hookimpl
from featbench.errors import ConfigError, PluginError, UnknownNameError
from featbench.manager import PluginLoadWarning, load_plugins
from featbench.testing import (
    CHECK_DEVICE,
    CHECK_GRAD,
    CHECK_SEED,
    CHECK_STACK,
    ContractError,
    augmenter_checks,
    check_augmenter,
    check_loss,
)

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRAS = os.path.join(HERE, "outside_plugin", "featbench_extras", "__init__.py")
WRONG = os.path.join(HERE, "wrong_plugins.py")
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(scope="module")
def host():
    return load_plugins(entry_points=[], local_modules=[EXTRAS, WRONG])


@pytest.fixture(scope="module")
def installed():
    with throwaway_install("plugins/outside_plugin") as target:
        yield subprocess_env(target)


# ---- featbench.testing ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fdrop", "gnoise"])
def test_outside_augmenters_pass_every_check(host, name):
    results = check_augmenter(host.get_augmenter(name), name=name)
    assert all(r.ok and not r.skipped for r in results), [str(r) for r in results]  # off is declared, so checked too


def test_outside_loss_passes_every_check(host):
    assert all(r.ok and not r.skipped for r in check_loss(host.get_loss("ls_ce"), name="ls_ce"))


def test_a_shared_k_shaped_dropout_mask_fails_the_stack_check(host):
    with pytest.raises(ContractError) as info:
        check_augmenter(host.get_augmenter("fdrop_shared"))
    assert info.value.check == CHECK_STACK and "differs from its single run" in info.value.reason
    assert "rng.for_head" in info.value.reason  # says how to draw


def test_a_zero_grad_logits_fails_naming_the_largest_difference(host):
    with pytest.raises(ContractError) as info:
        check_loss(host.get_loss("ls_ce_zero_grad"))
    assert info.value.check == CHECK_GRAD and "by up to" in info.value.reason and str(info.value).startswith(CHECK_GRAD)


def test_a_plugin_building_float32_tensors_fails_the_device_dtype_check():
    from featbench.api import Augmented, Targets

    class Float32Copy(FeatureAugmenter):
        """Copies the rows into a tensor built in the default dtype."""

        def augment(self, batch):
            import torch

            return Augmented(torch.empty(batch.x.shape).copy_(batch.x), Targets.hard(batch.y))

    results = {r.check: r for r in augmenter_checks(Float32Copy)}
    assert not results[CHECK_DEVICE].ok
    assert results[CHECK_DEVICE].reason.startswith("Augmented.x is torch.float32 on cpu with float64 input on cpu")
    assert results[CHECK_STACK].ok and results[CHECK_SEED].ok


def test_check_plugin_command_on_the_installed_outside_distribution(installed):
    res = featbench("check-plugin", "fdrop", "gnoise", "ls_ce", env=installed)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 16 and all(line.startswith("PASS  ") for line in lines)
    assert "all 16 check(s) passed" in res.stderr


def test_check_plugin_command_names_each_broken_property(installed):
    res = featbench("-p", WRONG, "check-plugin", "fdrop_shared", "ls_ce_zero_grad", env=installed)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2
    assert failed[0].startswith(f"FAIL  fdrop_shared: {CHECK_STACK} (head ")
    assert failed[1].startswith(f"FAIL  ls_ce_zero_grad: {CHECK_GRAD} (with hard labels")
    assert "2 of 10 check(s) failed" in res.stderr


def test_check_plugin_command_rejects_unknown_names_before_checking():
    assert_clean_error(featbench("check-plugin", "sea", "fdropp"), ("unknown augmenter or loss 'fdropp'",))
    assert_clean_error(featbench("check-plugin", "digits"), ("'digits' is a dataset",))


# ---- plugin-owned grids ----------------------------------------------------------------------------


def _planned_p(host, registry=None):
    from featbench.bench.plan import plan_rows
    from featbench.bench.spec import RunSpec

    (row,) = plan_rows(RunSpec(aug=("fdrop",), grid="quick"), host, registry)
    return sorted({c["p"] for c in row.configs}), len(row.configs)


def test_grid_quick_searches_the_plugins_declared_values(host, tmp_path):
    assert _planned_p(host) == ([0.1, 0.3], 8)  # 2 lr x 2 wd (registry.yaml's trainer) x the declared p
    import yaml

    from featbench.config import load_registry

    registry = dict(load_registry())
    registry["grids"] = {**registry["grids"], "quick": {**registry["grids"]["quick"], "fdrop": {"p": [0.2]}}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(registry))
    assert _planned_p(host, str(path)) == ([0.2], 4)  # a registry.yaml entry replaces the declared values


def test_grid_declared_on_the_class_overrides_the_hparams_own():
    class Declared(FeatureAugmenter):
        hparams = (HParam("s", 0.5, "scale", low=0.0, grids={"quick": (0.1, 0.2), "fine": [1, 2, 3]}),)
        grids = {"quick": {"s": (0.4,)}}

    assert declared_grid(Declared, "quick") == {"s": (0.4,)}
    assert declared_grid(Declared, "fine") == {"s": (1.0, 2.0, 3.0)}
    assert declared_grid(Declared, "paper") == {}


def test_a_grid_only_a_plugin_declares(monkeypatch):
    import sys

    from featbench.bench.plan import plan_rows
    from featbench.bench.spec import RunSpec

    class Fine(FeatureAugmenter):
        """Declares its own grid name."""

        hparams = (HParam("s", 0.5, "scale", low=0.0, grids={"fine": (0.25, 0.5, 1.0)}),)

    monkeypatch.setitem(sys.modules, "finemod", _module("finemod", fine=Fine))
    host = load_plugins(entry_points=[], local_modules=["finemod"])
    (row,) = plan_rows(RunSpec(aug=("fine",), grid="fine"), host)
    assert [c["s"] for c in row.configs] == [0.25, 0.5, 1.0] and {c["lr"] for c in row.configs} == {1.6}  # trainer at defaults
    with pytest.raises(UnknownNameError, match="unknown grid 'fin'.*did you mean 'fine'"):
        plan_rows(RunSpec(aug=("fine",), grid="fin"), host)


def test_grid_quick_on_the_command_line(installed, tmp_path):
    res = featbench("run", "--aug", "fdrop", "--grid", "quick", "--epochs", "1", "--format", "json", "--quiet", env=installed)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    (row,) = data["results"]
    assert row["grid_size"] == 8 and row["hp"]["p"] in (0.1, 0.3)
    assert data["versions"]["plugins"] == {"featbench": data["versions"]["featbench"], "featbench-extras": "0.1.0"}


# ---- HParam bounds, declared values, registration -----------------------------------------------------


def test_open_upper_bound():
    h = HParam("p", 0.1, "drop probability", low=0.0, high=1.0, high_open=True)
    assert h.check(0.999) == 0.999
    with pytest.raises(ConfigError, match="p must be < 1"):
        h.check(1.0)
    assert h.describe() == "p=0.1 in [0, 1)"


def test_declared_values_outside_the_bounds_are_a_plugin_error():
    with pytest.raises(PluginError, match="hyper-parameter p declares a value outside its own bounds"):
        HParam("p", 0.1, "drop probability", low=0.0, high=1.0, high_open=True, grids={"quick": (0.5, 1.0)})


def _module(name, **classes):
    mod = types.ModuleType(name)

    @hookimpl
    def register_augmenters(registry):
        for aug_name, cls in classes.items():
            registry.add(aug_name, cls)

    mod.register_augmenters = register_augmenters
    return mod


class _Good(FeatureAugmenter):
    """A valid augmenter."""


class _BadGrid(FeatureAugmenter):
    """Declares a grid for a parameter it does not have."""

    grids = {"quick": {"nope": (1, 2)}}


def test_one_bad_registration_drops_only_that_name(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mixedmod", _module("mixedmod", good1=_Good, badgrid=_BadGrid, good2=_Good))
    with pytest.warns(PluginLoadWarning, match="'badgrid'.*'nope', which is not one of its hyper-parameters.*other registrations are kept"):
        host = load_plugins(entry_points=[], local_modules=["mixedmod"], strict=False)
    assert {"good1", "good2"} <= set(host.list_augmenters()) and "badgrid" not in host.list_augmenters()
    with pytest.raises(PluginError, match="badgrid"):
        load_plugins(entry_points=[], local_modules=["mixedmod"], strict=True)


def test_hyper_parameter_clash_names_both_components():
    from featbench.plugins.losses import SmoothedHinge
    from featbench.training.grid import hparams_for

    class Clash(FeatureAugmenter):
        hparams = (HParam("delta", 0.0, "clashes with the hinge's", low=0.0),)

    with pytest.raises(ConfigError, match="'delta' is declared by both the loss SmoothedHinge and the augmenter Clash"):
        hparams_for(SmoothedHinge, Clash)


# ---- listings and messages ---------------------------------------------------------------------------


def test_plugins_verbose_lists_hyper_parameters_with_bounds_and_grids():
    res = featbench("-p", EXTRAS, "plugins", "-v")
    assert res.returncode == 0, res.stderr
    assert "augmenter fdrop: p=0.1 in [0, 1); paper: 0, 0.1, 0.2, 0.3, 0.5; quick: 0.1, 0.3  -- drop probability" in res.stdout
    assert "augmenter sea: eta=0.8 in [0, inf)" in res.stdout and "loss hinge: lamda=0.1 in (0, inf)" in res.stdout
    items = {i["name"]: i for i in json.loads(featbench("-p", EXTRAS, "plugins", "--json").stdout)["plugins"]}
    p = items["fdrop"]["hparams"]["p"]
    assert (p["low"], p["high"], p["high_open"], p["grids"]["quick"]) == (0.0, 1.0, True, [0.1, 0.3])


def test_p_of_an_installed_plugin_is_one_clean_line(installed):
    proc = featbench("-p", "featbench_extras", "plugins", env=installed)
    line = assert_clean_error(proc, ("-p featbench_extras", "already loaded as plugin 'extras'", "featbench-extras"),
                              ("--disable-plugin extras",))
    assert len(line) < 400


def test_disable_plugin_matching_nothing_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_plugins(entry_points=[], disabled=["sea", "featbench.plugins.rand"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "'sea'" in messages[0] and "matches no plugin" in messages[0]
    assert "augmenter 'sea' comes from plugin 'featbench.plugins.sea'" in messages[0]


def test_a_disabled_plugins_component_is_named_disabled_not_misspelt():
    proc = featbench("--disable-plugin", "featbench.plugins.core_tuning", "run", "--loss", "focal_con")
    assert_clean_error(proc, ("unknown loss 'focal_con'", "plugin 'featbench.plugins.core_tuning'", "which is disabled"),
                       ("remove 'featbench.plugins.core_tuning' from --disable-plugin",))
    assert "did you mean" not in proc.stderr


def test_a_failed_plugin_is_named_before_any_suggestion():
    from featbench.manager import LoadFailure

    host = load_plugins(entry_points=[], strict=False)
    host.failures.append(LoadFailure("extras", "featbench-extras", "ImportError: no module named scipy"))
    with pytest.raises(UnknownNameError, match=r"unknown augmenter 'fdrop' \(plugins that failed to load: plugin 'extras'"):
        host.get_augmenter("fdrop")


# ---- newcomer paths --------------------------------------------------------------------------------------


def test_a_misspelt_backbone_answers_without_importing_timm_or_torchvision():
    import subprocess
    import sys

    code = ("import sys; from featbench.cli import main; "
            "rc = main(['run', '--backbones', 'mobilenetv2', '--dataset', 'digits']); "
            "print(rc, 'timm' in sys.modules, 'torchvision' in sys.modules, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=__import__("cli_util").cli_env())
    assert proc.stdout.split() == ["2", "False", "False", "False"], proc.stderr
    assert "did you mean 'mobilenet-v2'?" in proc.stderr and "timm:mobilenetv2_100" in proc.stderr
    assert "torchvision:mobilenet_v2" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_family_member_names_read_from_sources_equal_the_libraries_lists():
    import timm
    from torchvision import models

    from featbench.plugins.backbones_hub import registered_model_names

    assert set(registered_model_names("timm")) == set(timm.list_models())
    assert set(registered_model_names("torchvision")) == set(models.list_models(module=models))
    assert registered_model_names("no_such_package_here") == ()


def test_a_suite_without_its_feature_files_names_the_script_that_writes_them(tmp_path):
    import shutil

    suite = tmp_path / "cpu_small.yaml"
    shutil.copy(os.path.join(ROOT, "benchmarks", "cpu_small.yaml"), suite)  # no data/ beside it
    proc = featbench("run", "--config", str(suite), cwd=str(tmp_path))
    assert_clean_error(proc, ("feature file not found", "digits_raw.npz"), ("run python make_cpu_features.py first",))
    assert os.listdir(tmp_path) == ["cpu_small.yaml"]  # nothing written


def test_a_failing_jobs_error_is_printed_once(tmp_path, feature_file, capsys):
    from featbench.cli import main

    plugin = tmp_path / "brokenaug.py"
    plugin.write_text(
        "from featbench.api import FeatureAugmenter, hookimpl\n\n"
        "class Broken(FeatureAugmenter):\n    \"\"\"Raises on every batch.\"\"\"\n\n"
        "    def augment(self, batch):\n        raise RuntimeError('broken augmenter: a long explanation')\n\n"
        "@hookimpl\ndef register_augmenters(registry):\n    registry.add('broken', Broken)\n")
    code = main(["-p", str(plugin), "run", "--features", feature_file, "--aug", "none,broken", "--seeds", "2", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("broken augmenter: a long explanation") == 1, err
    assert "featbench: error: 2 cell(s) failed: RuntimeError: broken augmenter" in err
    assert err.count("failed (its error is reported at the end)") == 2
