"""ISDA (ISDA, Wang et al., TPAMI 2021): the class-covariance surrogate as a logit transform, diagonal or full covariance."""

from __future__ import annotations

import time

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

from featbench.api import BoundLoss
from featbench.plugins.isda import ISDA, class_moments, diag_sigma2, full_sigma2, isda_strength
from featbench.training.trainer import head_gradients


def official_online_estimator(batches, d, C):
    """ISDA's EstimatorCV merge rule, written out per class in float64 (ISDA, Wang et al., TPAMI 2021)."""
    mean, cov, count = torch.zeros(C, d, dtype=torch.float64), torch.zeros(C, d, d, dtype=torch.float64), torch.zeros(C)
    for x, y in batches:
        for c in range(C):
            xc = x[y == c].double()
            n_c = xc.shape[0]
            if n_c == 0:
                continue
            mu_b = xc.mean(0)
            cov_b = (xc - mu_b).T @ (xc - mu_b) / n_c
            w = n_c / (n_c + count[c])
            diff = (mean[c] - mu_b).unsqueeze(1)
            cov[c] = (1 - w) * cov[c] + w * cov_b + w * (1 - w) * (diff @ diff.T)
            mean[c] = (1 - w) * mean[c] + w * mu_b
            count[c] += n_c
    return mean, cov


def quadratic_sigma2(w, cov, y):
    """sigma2[i, c] = (w_c - w_y)^T Sigma_y (w_c - w_y), one entry at a time."""
    C = w.shape[0]
    out = torch.zeros(len(y), C, dtype=cov.dtype)
    for i, yi in enumerate(y.tolist()):
        for c in range(C):
            v = (w[c] - w[yi]).to(cov.dtype)
            out[i, c] = v @ cov[yi] @ v
    return out


def test_precomputed_moments_equal_the_official_online_estimator_after_one_epoch():
    x, y = unit_blobs(n=90, d=6, C=3, seed=1)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    perm = torch.randperm(90, generator=torch.Generator().manual_seed(0))
    batches = [(xt[perm[s:s + 16]], yt[perm[s:s + 16]]) for s in range(0, 90, 16)]
    mean_o, cov_o = official_online_estimator(batches, 6, 3)
    mean, var, centred = class_moments(xt, yt, 3)
    torch.testing.assert_close(mean.double(), mean_o, atol=1e-6, rtol=0)
    torch.testing.assert_close(var.double(), torch.diagonal(cov_o, dim1=1, dim2=2), atol=1e-6, rtol=0)
    for c in range(3):
        s = centred[yt == c].double()
        torch.testing.assert_close(s.T @ s / s.shape[0], cov_o[c], atol=1e-6, rtol=0)


def test_diag_sigma2_equals_the_quadratic_form_is_zero_on_the_target_and_non_negative():
    x, y = unit_blobs(n=60, d=10, C=5, seed=2)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    _, var, _ = class_moments(xt, yt, 5)
    w = random_heads(2, 5, 10, seed=3)
    u = torch.tensor([0, 2, 4])
    got = diag_sigma2(w, var[u], u)
    for k in range(2):
        want = quadratic_sigma2(w[k], torch.diag_embed(var.double()), u)
        torch.testing.assert_close(got[k].double(), want, atol=1e-5, rtol=1e-4)
    assert torch.all(got[:, torch.arange(3), u] == 0) and torch.all(got >= 0)


def test_full_sigma2_data_form_equals_the_explicit_quadratic_form():
    x, y = unit_blobs(n=60, d=10, C=4, seed=4)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    _, _, centred = class_moments(xt, yt, 4)
    w = random_heads(2, 4, 10, seed=5)
    u = torch.tensor([1, 3])
    mask = torch.isin(yt, u)
    got = full_sigma2(w, centred[mask], torch.searchsorted(u, yt[mask]), yt[mask], 2)
    covs = torch.stack([(centred[yt == c].T @ centred[yt == c]).double() / int((yt == c).sum()) for c in range(4)])
    for k in range(2):
        torch.testing.assert_close(got[k].double(), quadratic_sigma2(w[k], covs, u), atol=1e-5, rtol=1e-4)
    assert torch.all(got[:, torch.arange(2), u].abs() < 1e-6) and torch.all(got >= 0)


def test_diag_equals_full_when_the_covariance_is_diagonal():
    # Rows mu_c +- s_a e_a: every class covariance is exactly diagonal.
    d, C = 5, 3
    means = torch.rand(C, d, generator=torch.Generator().manual_seed(0))
    scales = torch.tensor([0.1, 0.2, 0.3, 0.05, 0.15])
    rows, labels = [], []
    for c in range(C):
        for a in range(d):
            for sign in (1, -1):
                rows.append(means[c] + sign * scales[a] * F.one_hot(torch.tensor(a), d))
                labels.append(c)
    x, y = torch.stack(rows), torch.tensor(labels)
    _, var, centred = class_moments(x, y, C)
    w = random_heads(1, C, d, seed=1)
    u = torch.arange(C)
    torch.testing.assert_close(diag_sigma2(w, var, u), full_sigma2(w, centred, y, y, C), atol=1e-6, rtol=1e-5)


def straightforward_surrogate(x, y, w, lam_t, cov, lamda_s=1.0, delta=0.0):
    """Mean over rows of the ISDA loss with the hinge of (lamda_s, delta), one row at a time."""
    total = 0.0
    for i in range(len(y)):
        z = w @ x[i]
        s2 = torch.stack([(w[c] - w[y[i]]) @ cov[y[i]] @ (w[c] - w[y[i]]) for c in range(w.shape[0])])
        zt = z + lam_t / (2 * lamda_s) * s2 - delta * F.one_hot(y[i], w.shape[0])
        total = total + lamda_s * F.cross_entropy((zt / lamda_s).unsqueeze(0), y[i:i + 1])
    return total / len(y)


@pytest.mark.parametrize("cov,surrogate,classes", [("diag", "ce", 4), ("full", "ce", 4), ("full", "run", 4), ("full", "ce", 2)])
def test_training_gradient_equals_autograd_of_the_per_example_surrogate(cov, surrogate, classes):
    x, y = unit_blobs(n=40, d=8, C=4, seed=6)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    configs = configs_for(ISDA, None, {"lambda0": 2.0, "lamda": 0.5, "delta": 1.0}, {"lambda0": 7.0, "lamda": 0.2},
                          cov=cov, surrogate=surrogate)
    run = make_run(ISDA, configs, x, y, 4, epochs=4)
    w = random_heads(2, 4, 8, seed=7)
    rows = (yt < classes).nonzero().squeeze(1)[:16]  # all 4 classes (the fast path of cov=full) or only 2
    assert len(yt[rows].unique()) == classes
    x, y = x[rows], y[rows]
    batch = batch_of(x, y, w, epoch=3)
    aug = ISDA(run).augment(batch)
    got = head_gradients(aug, w, run.loss)
    _, var, centred = class_moments(xt, yt, 4)
    covs = torch.diag_embed(var) if cov == "diag" else torch.stack([centred[yt == c].T @ centred[yt == c] / int((yt == c).sum())
                                                                     for c in range(4)])
    for k, c in enumerate(configs):
        wk = w[k].clone().requires_grad_(True)
        lam_s, dlt = (float(torch.tensor(c["lamda"])), c["delta"]) if surrogate == "run" else (1.0, 0.0)
        loss = straightforward_surrogate(xt[rows], yt[rows], wk, c["lambda0"] * 3 / 4, covs, lam_s, dlt)
        (want,) = torch.autograd.grad(loss, wk)
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-4)


def test_sigma2_is_not_detached_from_the_heads():
    x, y = unit_blobs(n=40, d=8, C=4, seed=6)
    run = make_run(ISDA, configs_for(ISDA, None, {"lambda0": 5.0}), x, y, 4, epochs=2)
    w = random_heads(1, 4, 8, seed=7)
    aug = ISDA(run).augment(batch_of(x[:16], y[:16], w, epoch=1))
    frozen = type(aug)(aug.x, aug.targets, logit_adjust=lambda z, weight: aug.logit_adjust(z, weight.detach()),
                       row_loss=aug.row_loss)
    assert float((head_gradients(aug, w, run.loss) - head_gradients(frozen, w, run.loss)).abs().max()) > 1e-4


def test_surrogate_bounds_cross_entropy_and_the_expected_noisy_loss():
    x, y = unit_blobs(n=40, d=8, C=4, seed=8)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    run = make_run(ISDA, configs_for(ISDA, None, {"lambda0": 1.0}, cov="full"), x, y, 4, epochs=2)
    w = random_heads(1, 4, 8, seed=9)
    aug = ISDA(run).augment(batch_of(x, y, w, epoch=1))  # lam_t = 0.5
    logits = xt @ w[0].T
    surrogate = aug.row_loss(aug.logit_adjust(logits.unsqueeze(0), w))[0]
    ce = F.cross_entropy(logits, yt, reduction="none")
    assert torch.all(surrogate >= ce - 1e-6) and float((surrogate - ce).max()) > 1e-3
    _, _, centred = class_moments(xt, yt, 4)
    g = torch.Generator().manual_seed(0)
    mc = torch.zeros(len(yt))
    for c in range(4):
        rows = centred[yt == c]
        chol = torch.linalg.cholesky(rows.T @ rows / rows.shape[0] * 0.5 + 1e-9 * torch.eye(8))
        idx = (yt == c).nonzero().squeeze(1)
        eps = torch.randn(4000, len(idx), 8, generator=g) @ chol.T
        noisy = (xt[idx] + eps) @ w[0].T
        mc[idx] = F.cross_entropy(noisy.reshape(-1, 4), yt[idx].repeat(4000), reduction="none").view(4000, -1).mean(0)
    assert torch.all(surrogate >= mc - 1e-3)


def test_strength_schedule():
    lam = isda_strength(torch.tensor([0.5, 10.0]), 0, 4)
    assert torch.equal(lam, torch.zeros(2))
    torch.testing.assert_close(isda_strength(torch.tensor([0.5, 10.0]), 3, 4), torch.tensor([0.375, 7.5]))


def test_lambda0_zero_and_the_first_epoch_are_cross_entropy_exactly():
    x, y = unit_blobs(n=70, d=12, C=3)
    for cov in ("diag", "full"):
        assert_equals_baseline(ISDA, configs_for(ISDA, CrossEntropy, {"lambda0": 0.0, "cov": cov}, lr=1.0)[0], x, y, 3,
                               loss=CrossEntropy())
    cfg = configs_for(ISDA, CrossEntropy, {"lambda0": 5.0}, lr=1.0)[0]
    assert_equals_baseline(ISDA, cfg, x, y, 3, loss=CrossEntropy(), epochs=1)  # lam_t = 0 in epoch 0


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_stack_equals_single_runs(cov):
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(ISDA, None, {"lambda0": 0.0}, {"lambda0": 1.0}, {"lambda0": 10.0, "lr": 0.5}, cov=cov)
    assert_stack_equals_singles(ISDA, configs, x, y, 3, epochs=3)


def test_diag_stays_small_and_fast_at_d8192_c397():
    # The official full path would need C*d*d = 2.7e10 floats here; the diagonal path needs C*d.
    n, d, C, b = 794, 8192, 397, 64
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.rand(n, d, generator=g), dim=1)
    y = torch.arange(n) % C
    run = make_run(ISDA, configs_for(ISDA, None, {"lambda0": 1.0}), x.numpy(), y.numpy(), C, epochs=2)
    w = random_heads(1, C, d, scale=1.0)
    start = time.perf_counter()
    aug = ISDA(run).augment(batch_of(x[:b], y[:b], w, epoch=1))
    grad = head_gradients(aug, w, BoundLoss(run.loss.loss, run.loss.hp))
    assert time.perf_counter() - start < 20 and torch.isfinite(grad).all()
