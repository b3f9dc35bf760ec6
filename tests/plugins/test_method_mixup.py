"""Mixup (Verma et al., ICML 2019): faithful last-layer manifold mixup with Beta(alpha, alpha) weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from method_utils import (
    CrossEntropy,
    assert_equals_baseline,
    assert_stack_equals_singles,
    batch_of,
    configs_for,
    make_run,
    random_heads,
    unit_blobs,
)

from featbench.api import AugRNG
from featbench.plugins import mixup as mixup_module
from featbench.plugins.draws import beta, permutation
from featbench.plugins.mixup import Mixup


def augment(configs, x, y, seed=3, loss=None):
    run = make_run(Mixup, configs, x, y, 3, seed=seed, loss=loss)
    return run, Mixup(run).augment(batch_of(x, y, random_heads(len(configs), 3, x.shape[1])))


def test_rows_lie_on_their_segments_and_labels_carry_unit_mass():
    x, y = unit_blobs(n=12, d=8, C=3, seed=1)
    run, aug = augment(configs_for(Mixup, None, {"alpha": 0.5}, {"alpha": 2.0}), x, y)
    twin = AugRNG(run.rng.seed, 2)
    perm = permutation(twin.shared, 12)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for k, a in enumerate((0.5, 2.0)):
        lam = float(beta(twin.for_head(k), a, (1,))[0])
        torch.testing.assert_close(aug.x[k], lam * xt + (1 - lam) * xt[perm])
        assert torch.equal(aug.targets.index[k, :, 0], yt) and torch.equal(aug.targets.index[k, :, 1], yt[perm])
        torch.testing.assert_close(aug.targets.weight[k, :, 0], torch.full((12,), lam))
    torch.testing.assert_close(aug.targets.dense_probs(3).sum(-1), torch.ones(2, 12))


def test_two_label_loss_equals_soft_label_cross_entropy():
    x, y = unit_blobs(n=12, d=8, C=3, seed=2)
    cfg = configs_for(Mixup, None, {"alpha": 1.0, "lamda": 1.0, "delta": 0.0})
    run, aug = augment(cfg, x, y)
    logits = aug.x @ random_heads(1, 3, 8, seed=9).transpose(1, 2)
    got = run.loss.per_row(logits, aug.targets)
    soft = aug.targets.dense_probs(3)
    want = -(soft * F.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(got, want)


def test_official_bce_on_softmax():
    x, y = unit_blobs(n=12, d=8, C=3, seed=2)
    run, aug = augment(configs_for(Mixup, None, {"mix_loss": "bce_softmax"}), x, y)
    logits = aug.x @ random_heads(1, 3, 8, seed=9).transpose(1, 2)
    want = torch.nn.BCELoss()(torch.softmax(logits[0], -1), aug.targets.dense_probs(3)[0])
    torch.testing.assert_close(aug.row_loss(logits).mean(), want)


def test_options_per_example_weights_and_renormalisation():
    x, y = unit_blobs(n=12, d=8, C=3, seed=2)
    _, aug = augment(configs_for(Mixup, None, {"lam_per_example": "true", "renormalize": "true"}), x, y)
    assert aug.targets.weight[0, :, 0].unique().numel() == 12
    torch.testing.assert_close(aug.x.norm(dim=-1), torch.ones(1, 12))
    _, plain = augment(configs_for(Mixup, None, {}), x, y)
    assert float(plain.x.norm(dim=-1).min()) < 0.999  # a mix of two unit vectors is shorter


def test_beta_draws_match_the_distribution():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    for a in (0.2, 2.0):
        draws = np.array([float(beta(g, a, (1,))[0]) for _ in range(3000)])
        assert stats.kstest(draws, stats.beta(a, a).cdf).pvalue > 0.01
        assert stats.kstest(draws, stats.beta(a * 2, a * 2).cdf).pvalue < 0.01  # the test can tell alphas apart


def test_identity_permutation_is_the_baseline(monkeypatch):
    x, y = unit_blobs(n=70, d=12, C=3)
    monkeypatch.setattr(mixup_module, "permutation", lambda gen, b: torch.arange(b))
    cfg = configs_for(Mixup, CrossEntropy, {"alpha": 1.0}, lr=1.0)[0]
    assert_equals_baseline(Mixup, cfg, x, y, 3, loss=CrossEntropy(), exact=False)


@pytest.mark.parametrize("per_example", ["false", "true"])
def test_stack_with_different_alphas_equals_single_runs(per_example):
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(Mixup, None, {"alpha": 0.2}, {"alpha": 1.0}, {"alpha": 2.0, "lr": 0.5}, lam_per_example=per_example)
    assert_stack_equals_singles(Mixup, configs, x, y, 3)
