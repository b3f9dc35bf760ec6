"""A real third-party distribution (tests/plugins/example_plugin) installed into a throwaway folder and used through
its `featbench` entry point, in a subprocess, exactly as a user would; the folder is deleted afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from plugin_install import importable, subprocess_env, throwaway_install


@pytest.fixture(scope="module")
def target():
    with throwaway_install("plugins/example_plugin") as folder:
        yield folder


@pytest.fixture(scope="module")
def installed(target):
    return subprocess_env(target)


def featbench(env, *args):
    return subprocess.run([sys.executable, "-m", "featbench", *args], capture_output=True, text=True, env=env, cwd="/")


def test_plugins_lists_the_entry_point_augmenter_with_its_distribution(installed):
    res = featbench(installed, "plugins", "--json")
    assert res.returncode == 0, res.stderr
    items = {i["name"]: i for i in json.loads(res.stdout)["plugins"]}
    assert items["jitter"]["distribution"] == "featbench-jitter"
    assert items["jitter"]["plugin"] == "jitter"
    assert {"none", "sea", "ce", "hinge"} <= set(items)


def test_run_uses_the_entry_point_augmenter(installed, feature_file):
    res = featbench(installed, "run", "--aug", "none,jitter", "--features", feature_file, "--epochs", "2", "--format", "json",
                    "--hp", "sigma=0,0.1")
    assert res.returncode == 0, res.stderr
    rows = {r["augmenter"]: r for r in json.loads(res.stdout)["results"]}
    assert set(rows) == {"none", "jitter"} and rows["jitter"]["hp"]["sigma"] in (0.0, 0.1)


def test_disabling_the_distribution_hides_it(installed):
    env = dict(installed, FEATBENCH_DISABLE_PLUGINS="featbench-jitter")
    res = featbench(env, "run", "--aug", "jitter")
    assert res.returncode == 2 and "unknown augmenter 'jitter'" in res.stderr and "Traceback" not in res.stderr


def test_jitter_with_sigma_zero_is_the_baseline(target):
    from importlib.metadata import entry_points

    import numpy as np
    from conftest import make_blobs

    from featbench.manager import load_plugins
    from featbench.plugins.baseline import NoAugmentation
    from featbench.plugins.losses import SmoothedHinge
    from featbench.training.trainer import TrainSettings, train_heads

    with importable(target, "featbench_jitter"):
        host = load_plugins(entry_points=[ep for ep in entry_points(group="featbench") if ep.name == "jitter"])
    Jitter = host.get_augmenter("jitter")
    d = make_blobs()
    cfg = dict(lr=1.0, wd=0.0, lamda=0.1, delta=0.0)
    s = TrainSettings(epochs=2, batch_size=64)
    a = train_heads(d["train_x"], d["train_y"], 4, Jitter, SmoothedHinge(), [{**cfg, "sigma": 0.0}, {**cfg, "sigma": 0.2}], s)
    b = train_heads(d["train_x"], d["train_y"], 4, NoAugmentation, SmoothedHinge(), [cfg], s)
    assert np.allclose(a.weight[0], b.weight[0], atol=1e-6) and not np.allclose(a.weight[1], b.weight[0], atol=1e-3)
