"""The K-head trainer, metrics and the selection protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_blobs
from reference import run_cell

from featbench.inputs.datasets import stratified_holdout
from featbench.inputs.features import FeatureSet
from featbench.plugins.baseline import NoAugmentation
from featbench.plugins.losses import CrossEntropy, SmoothedHinge
from featbench.plugins.sea import SeA
from featbench.training import metrics
from featbench.training.grid import expand_grid, hparams_for, structural_groups
from featbench.training.trainer import TrainSettings, init_weight, predict, train_heads

DATA = make_blobs(n_train=200, d=12, C=4, seed=1)


@pytest.mark.parametrize("aug", [NoAugmentation, SeA])
def test_k_configs_together_equal_k_separate_runs(aug):
    params = hparams_for(SmoothedHinge, aug)
    values = {"lr": [0.5, 2.0], "wd": [0.0, 1e-3], "lamda": [0.1, 1.0], "delta": [0.0, 1.0]}
    if aug is SeA:
        values.update(eta=[0.0, 0.8], alpha=[0.0, 0.02])
    configs = expand_grid(params, values)
    configs = configs[:: max(1, len(configs) // 12)]  # a spread of 12-16 configurations
    settings = TrainSettings(epochs=3, batch_size=48, seed=5)
    stack = train_heads(DATA["train_x"], DATA["train_y"], 4, aug, SmoothedHinge(), configs, settings)
    for k, cfg in enumerate(configs):
        single = train_heads(DATA["train_x"], DATA["train_y"], 4, aug, SmoothedHinge(), [cfg], settings)
        assert torch.allclose(stack.weight[k], single.weight[0], atol=1e-5, rtol=1e-5), cfg
        assert np.array_equal(predict(stack.weight[k:k + 1], DATA["test_x"]), predict(single.weight, DATA["test_x"]))


def test_initialisation_is_nn_linear_default_and_seeded():
    w = init_weight(5, 400, seed=0)
    assert w.abs().max() <= 1 / 20 and w.abs().max() > 0.9 / 20
    assert torch.equal(w, init_weight(5, 400, seed=0)) and not torch.equal(w, init_weight(5, 400, seed=1))


def test_training_learns_and_momentum_sgd_matches_torch_optim():
    cfg = dict(lr=0.8, wd=1e-4, lamda=1.0, delta=0.0)
    res = train_heads(DATA["train_x"], DATA["train_y"], 4, NoAugmentation, CrossEntropy(), [cfg], TrainSettings(epochs=2, batch_size=50))
    # the same run with torch.optim.SGD and nn.Linear, same init and data order
    from featbench.api import seed_stream
    from featbench.training.trainer import DATA_ORDER_STREAM

    model = torch.nn.Linear(12, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(init_weight(4, 12, 0))
    opt = torch.optim.SGD(model.parameters(), lr=0.8, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed_stream(0, DATA_ORDER_STREAM))
    x, y = torch.as_tensor(DATA["train_x"]), torch.as_tensor(DATA["train_y"])
    for _ in range(2):
        perm = torch.randperm(200, generator=g)
        for s in range(0, 200, 50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[perm[s:s + 50]]), y[perm[s:s + 50]]).backward()
            opt.step()
    assert torch.allclose(res.weight[0], model.weight.detach(), atol=1e-6)
    acc = metrics.top1(predict(res.weight, DATA["test_x"]), DATA["test_y"])[0]
    assert acc > 60


def test_a_diverging_configuration_is_reported_and_does_not_stop_the_others():
    configs = [dict(lr=1.0, wd=0.0, lamda=0.1, delta=0.0), dict(lr=1e38, wd=0.0, lamda=0.1, delta=0.0)]
    res = train_heads(DATA["train_x"], DATA["train_y"], 4, NoAugmentation, SmoothedHinge(), configs, TrainSettings(epochs=3, batch_size=50))
    single = train_heads(DATA["train_x"], DATA["train_y"], 4, NoAugmentation, SmoothedHinge(), configs[:1], TrainSettings(epochs=3, batch_size=50))
    assert res.diverged == (False, True)
    assert torch.isfinite(res.weight).all()
    assert torch.allclose(res.weight[0], single.weight[0], atol=1e-6)


def test_metrics_known_values():
    y = np.array([0, 0, 0, 0, 1, 2])
    pred = np.array([[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 2]])
    assert np.allclose(metrics.top1(pred, y), [400 / 6, 300 / 6])
    assert np.allclose(metrics.mean_per_class(pred, y, 3), [100 / 3, (25 + 100 + 100) / 3])


def test_stratified_holdout_keeps_every_class_and_is_seeded():
    y = np.repeat(np.arange(5), [10, 20, 3, 2, 40])
    tr, va = stratified_holdout(y, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    assert set(y[tr]) == set(range(5)) and set(y[va]) == set(range(5))
    assert np.array_equal(stratified_holdout(y, 0.2, 0)[1], va) and not np.array_equal(stratified_holdout(y, 0.2, 1)[1], va)


def test_structural_parameters_split_the_stack():
    from featbench.api import HParam

    params = {"lr": HParam("lr", 1.0, "x"), "k": HParam("k", 1, "x", vectorized=False)}
    configs = expand_grid(params, {"lr": [1, 2], "k": [1, 2, 3]})
    assert [sorted(configs[i]["k"] for i in g) for g in structural_groups(params, configs)] == [[1, 1], [2, 2], [3, 3]]


def test_protocol_selects_on_validation_and_refits_on_train_plus_val():
    data = make_blobs(n_train=160, n_val=80, n_test=100, d=10, C=3, seed=2)
    fs = FeatureSet(name="b", train_x=data["train_x"], train_y=data["train_y"], val_x=data["val_x"], val_y=data["val_y"],
                    test_x=data["test_x"], test_y=data["test_y"], num_classes=3)
    params = hparams_for(SmoothedHinge, NoAugmentation)
    configs = expand_grid(params, {"lr": [1e-4, 1.0]})
    settings = TrainSettings(epochs=3, batch_size=40)
    cell = run_cell(fs, "none", NoAugmentation, "hinge", SmoothedHinge(), params, configs, settings)
    assert cell.hp["lr"] == 1.0 and len(cell.val_scores) == 2 and cell.val_scores[1] >= cell.val_scores[0]
    refit = train_heads(np.concatenate([fs.train_x, fs.val_x]), np.concatenate([fs.train_y, fs.val_y]), 3, NoAugmentation,
                        SmoothedHinge(), [cell.hp], settings)
    expect = metrics.top1(predict(refit.weight, fs.test_x), fs.test_y)[0]
    assert cell.value == pytest.approx(expect)
    assert cell.correct.mean() * 100 == pytest.approx(expect)
