"""Choice-valued hyper-parameters (HParam.choices -> RunInfo.options) and the two small contract
extensions the methods need: Augmented.row_loss and Loss.batch_term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from method_utils import configs_for, make_run, train, unit_blobs

from featbench.api import Augmented, FeatureAugmenter, HParam, Loss, Targets
from featbench.cli import main
from featbench.errors import ConfigError, PluginError, UnknownNameError
from featbench.plugins.losses import SmoothedHinge, smoothed_hinge_rows
from featbench.training.grid import expand_grid, grid_values, parse_hp_args, structural_groups
from featbench.training.trainer import head_gradients

COV = HParam("cov", "diag", "covariance", choices=("diag", "full"))


def test_choice_check_accepts_choices_and_yaml_booleans():
    assert COV.check("full") == "full"
    flag = HParam("on", "true", "a flag", choices=("true", "false"))
    assert flag.check(False) == "false" and flag.check(True) == "true"
    assert COV.structural and not HParam("eta", 0.8, "step").structural
    assert HParam("k", 2, "count", vectorized=False).structural


def test_choice_check_names_the_valid_values():
    with pytest.raises(UnknownNameError) as err:
        COV.check("ful")
    assert "'ful'" in str(err.value) and "diag, full" in str(err.value) and "did you mean 'full'" in str(err.value)
    with pytest.raises(UnknownNameError):
        COV.check(1.0)


def test_bad_declarations_are_plugin_errors():
    with pytest.raises(PluginError, match="not one of its choices"):
        HParam("cov", "dense", "x", choices=("diag", "full"))
    with pytest.raises(PluginError, match="needs choices"):
        HParam("cov", "diag", "x")


def test_parse_hp_args_keeps_non_numbers_as_strings():
    assert parse_hp_args(["eta=0,0.4", "cov=full,diag"]) == {"eta": [0.0, 0.4], "cov": ["full", "diag"]}
    with pytest.raises(ConfigError, match="empty value"):
        parse_hp_args(["cov=full,"])


def test_registry_grid_values_keep_strings_and_booleans():
    reg = {"grids": {"g": {"isda": {"lambda0": [0, 1], "cov": ["diag", "full"]}, "x": {"flag": [True]}}}}
    assert grid_values(reg, "g", ["isda", "x"]) == {"lambda0": [0.0, 1.0], "cov": ["diag", "full"], "flag": [True]}


def test_options_split_stacks_and_reach_the_run():
    params = {"eta": HParam("eta", 0.8, "step"), "cov": COV}
    configs = expand_grid(params, {"eta": [0.1, 0.2], "cov": ["diag", "full"]})
    assert [c["cov"] for c in configs] == ["diag", "full", "diag", "full"]
    assert structural_groups(params, configs) == [[0, 2], [1, 3]]
    x, y = unit_blobs(n=20, d=4, C=2)
    run = make_run(_Recorder, configs_for(_Recorder, None, {"cov": "diag"}, {"cov": "diag", "lr": 2.0}), x, y, 2)
    assert run.options == {"cov": "diag"} and set(run.hp) == {"lamda", "delta", "lr", "wd"}
    assert run.loss.hp["cov"] == "diag"  # losses see options in their hp mapping


def test_a_stack_must_agree_on_its_options():
    x, y = unit_blobs(n=20, d=4, C=2)
    configs = configs_for(_Recorder, None, {"cov": "diag"}, {"cov": "full"})
    with pytest.raises(ConfigError, match="differ in the option cov"):
        train(_Recorder, configs, x, y, 2, epochs=1)


class _Recorder(FeatureAugmenter):
    """An identity augmenter with one option."""

    hparams = (COV,)

    def augment(self, batch):
        return Augmented(batch.x, Targets.hard(batch.y))


def test_cli_accepts_a_choice_and_rejects_a_wrong_one(capsys, tmp_path):
    x, y = unit_blobs(n=60, d=8, C=3)
    path = str(tmp_path / "f.npz")
    np.savez(path, train_x=x[:40], train_y=y[:40], test_x=x[40:], test_y=y[40:])
    assert main(["run", "--aug", "isda", "--features", path, "--hp", "cov=diag,full", "--epochs", "2", "--quiet"]) == 0
    assert "isda" in capsys.readouterr().out
    assert main(["run", "--aug", "isda", "--features", path, "--hp", "cov=dense", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown value of hyper-parameter cov 'dense'" in err and "diag, full" in err


def test_row_loss_replaces_the_run_loss_and_batch_term_is_added():
    torch.manual_seed(0)
    K, r, C, d = 2, 5, 3, 4
    x, y, w = torch.randn(r, d), torch.randint(0, C, (r,)), torch.randn(K, C, d)
    hp = {"lamda": torch.tensor([0.1, 1.0]), "delta": torch.tensor([0.0, 1.0])}
    loss = _WithBatchTerm()
    from featbench.api import BoundLoss

    bound = BoundLoss(loss, hp)
    aug = Augmented(x, Targets.hard(y), row_loss=lambda z: (z ** 2).sum(-1))
    got = head_gradients(aug, w, bound)
    wr = w.clone().requires_grad_(True)
    z = x @ wr.transpose(1, 2)
    want_total = (z ** 2).sum(-1).mean(-1) + (z.sum((-1, -2)) * 0.5)
    (want,) = torch.autograd.grad(want_total.sum(), wr)
    torch.testing.assert_close(got, want)
    # without row_loss the run's loss is used, plus the batch term
    got2 = head_gradients(Augmented(x, Targets.hard(y)), w, bound)
    wr = w.clone().requires_grad_(True)
    z = x @ wr.transpose(1, 2)
    total = smoothed_hinge_rows(z, y.unsqueeze(-1), None, hp["lamda"], hp["delta"]).mean(-1) + z.sum((-1, -2)) * 0.5
    (want2,) = torch.autograd.grad(total.sum(), wr)
    torch.testing.assert_close(got2, want2)


class _WithBatchTerm(SmoothedHinge):
    def batch_term(self, logits, targets, hp):
        return logits.sum((-1, -2)) * 0.5


def test_default_loss_has_no_batch_term():
    assert Loss().batch_term(torch.zeros(1, 2, 3), Targets.hard(torch.zeros(2, dtype=torch.long)), {}) is None
