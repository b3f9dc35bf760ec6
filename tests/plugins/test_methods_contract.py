"""Every built-in augmenter, generated from the plugin registry: K-stack == K single runs, determinism
under a seed (and randomness from it for the random methods), the "off" setting == the baseline exactly,
and no NaN from a final batch of one row (SeA paper §3.1, Alg. 1, Eqs. 4-11)."""

from __future__ import annotations

import pytest
import torch
from method_utils import VARIATIONS, assert_equals_baseline, assert_stack_equals_singles, configs_for, train, unit_blobs

from featbench.manager import load_plugins
from featbench.training import trainer as train_module

# The setting that switches each method off (registry.yaml's paper grid: every grid holds one); mixup has none.
OFF = {
    "sea": {"eta": 0.0}, "sea_neg": {"eta": 0.0}, "rand": {"eta": 0.0}, "adv": {"eta": 0.0}, "mixdir": {"eta": 0.0},
    "isda": {"lambda0": 0.0, "surrogate": "run"},  # surrogate=ce is plain CE: tested against --loss ce in its file
    "meada": {"phases": 0, "every": 1},
}
RANDOM = ("rand", "mixdir", "mixup", "mixup_hard")


@pytest.fixture(scope="module")
def augmenters():
    host = load_plugins(entry_points=[], local_modules=(), disabled=())
    return {e.name: e.obj for e in host.augmenters if e.provider.dist == "featbench"}


def test_every_builtin_augmenter_has_a_variation(augmenters):
    assert sorted(augmenters) == sorted(VARIATIONS)
    assert list(augmenters) == ["none", "sea", "sea_neg", "rand", "adv", "mixdir", "mixup", "isda", "meada", "mixup_hard"]


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_stack_equals_single_runs_and_is_deterministic(augmenters, name):
    x, y = unit_blobs(n=70, d=12, C=3, seed=1)  # 70 = 2 * 32 + 6: a short last batch
    a, b = VARIATIONS[name]
    configs = configs_for(augmenters[name], None, {**a, "lr": 1.0}, {**b, "lr": 0.5}, {**b, "lr": 2.0, "wd": 1e-4})
    stack = assert_stack_equals_singles(augmenters[name], configs, x, y, 3, epochs=3, batch_size=32)
    again = train(augmenters[name], configs, x, y, 3, epochs=3, batch_size=32)
    assert torch.equal(stack, again)
    assert torch.isfinite(stack).all()


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_final_batch_of_one_row_stays_finite(augmenters, name):
    x, y = unit_blobs(n=33, d=8, C=3, seed=2)  # 33 mod 32 = 1
    cfg = configs_for(augmenters[name], None, VARIATIONS[name][1], lr=1.0)
    w = train(augmenters[name], cfg, x, y, 3, epochs=2, batch_size=32)
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("name", sorted(OFF))
def test_off_setting_is_the_baseline_exactly(augmenters, name):
    x, y = unit_blobs(n=70, d=12, C=3)
    assert_equals_baseline(augmenters[name], configs_for(augmenters[name], None, OFF[name], lr=1.0)[0], x, y, 3)


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_only_the_random_methods_use_the_augmentation_stream(augmenters, name, monkeypatch):
    x, y = unit_blobs(n=70, d=12, C=3)
    cfg = configs_for(augmenters[name], None, VARIATIONS[name][1], lr=1.0)
    a = train(augmenters[name], cfg, x, y, 3)
    monkeypatch.setattr(train_module, "AUGMENT_STREAM", train_module.AUGMENT_STREAM + 100)  # same init and data order
    b = train(augmenters[name], cfg, x, y, 3)
    assert torch.equal(a, b) == (name not in RANDOM)


@pytest.mark.parametrize("grid", ["paper", "quick"])
def test_registry_grids_name_real_hyper_parameters_with_valid_values(augmenters, grid):
    from featbench.config import load_registry
    from featbench.training.grid import TRAINER_HPARAMS, grid_values

    host = load_plugins(entry_points=[])
    registry = load_registry()
    components = {"trainer": {h.name: h for h in TRAINER_HPARAMS}}
    components.update({e.name: {h.name: h for h in e.obj.hparams} for e in host.losses})
    components.update({name: {h.name: h for h in cls.hparams} for name, cls in augmenters.items()})
    entries = {k: v for k, v in registry["grids"][grid].items() if k != "doc"}
    assert set(entries) == set(components)  # every built-in component has an entry (possibly empty)
    for comp, params in components.items():
        for name, values in grid_values(registry, grid, [comp]).items():
            assert name in params, f"grids.{grid}.{comp}.{name} is not a hyper-parameter of {comp}"
            assert all(params[name].check(v) is not None for v in values)
    if grid == "paper":  # registry.yaml's paper grid: every method's paper grid contains its off setting
        for name, setting in OFF.items():
            key = next(iter(setting))  # the numeric switch (eta, lambda0, phases) comes first
            assert setting[key] in grid_values(registry, grid, [name])[key], name


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_builtin_augmenter_passes_the_shipped_contract_checks(augmenters, name):
    """The checks `featbench check-plugin` runs for third-party authors (featbench.testing), here on the built-ins."""
    from featbench.testing import AUGMENTER_CHECKS, check_augmenter

    cls = augmenters[name]
    assert cls.off == OFF.get(name)  # the off setting the checker uses is the one this file tests
    results = check_augmenter(cls, name=name, variations=tuple(VARIATIONS[name]))
    assert [r.check for r in results] == list(AUGMENTER_CHECKS)
    assert all(r.ok for r in results) and [r.skipped for r in results] == [False, False, name not in OFF, False, False, False]


@pytest.mark.parametrize("name", ["hinge", "ce", "focal_con"])
def test_builtin_loss_passes_the_shipped_contract_checks(name):
    from featbench.testing import LOSS_CHECKS, check_loss

    host = load_plugins(entry_points=[])
    results = check_loss(host.get_loss(name), name=name)
    assert [r.check for r in results] == list(LOSS_CHECKS) and all(r.ok and not r.skipped for r in results)
