"""SeA (SeA paper §3.1, Alg. 1, Eqs. 4-11): projection weights, span property, degenerate settings, the official step."""

from __future__ import annotations

import pytest
import torch
from reference_sea import get_adv, train_reference

from featbench.api import Batch, BoundLoss
from featbench.directions import feature_gradients, masked_softmax_weights, sea_augment
from featbench.plugins.losses import SmoothedHinge
from featbench.plugins.sea import SeA
from featbench.training.trainer import TrainSettings, train_heads


def unit(n, d, seed=0, nonneg=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x.abs() if nonneg else x
    return torch.nn.functional.normalize(x, dim=1)


def test_q_rows_on_the_simplex_with_zero_diagonal_and_equal_to_official_route():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(2, 9, 9, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.5, 0.05], dtype=torch.float64)
    q = masked_softmax_weights(S, alpha)
    assert torch.all(q >= 0) and torch.all(torch.diagonal(q, dim1=1, dim2=2) == 0)
    assert torch.allclose(q.sum(-1), torch.ones(2, 9, dtype=torch.float64), atol=1e-12)
    official = torch.softmax(S / alpha[:, None, None], -1)
    official = official * (1 - torch.eye(9, dtype=torch.float64))
    official = official / official.sum(-1, keepdim=True)
    assert torch.allclose(q, official, atol=1e-12)


def test_alpha_limits_uniform_and_one_hot():
    g = torch.Generator().manual_seed(1)
    S = torch.randn(1, 7, 7, generator=g, dtype=torch.float64)
    big = masked_softmax_weights(S, torch.tensor([1e9], dtype=torch.float64))
    off = ~torch.eye(7, dtype=torch.bool)
    assert torch.allclose(big[0][off], torch.full((42,), 1 / 6, dtype=torch.float64), atol=1e-8)
    hard = masked_softmax_weights(S, torch.tensor([0.0], dtype=torch.float64))
    expect = S[0].masked_fill(~off, float("-inf")).argmax(1)
    assert torch.equal(hard[0].argmax(1), expect) and torch.equal(hard[0].sum(1), torch.ones(7, dtype=torch.float64))
    tiny = masked_softmax_weights(S, torch.tensor([1e-4], dtype=torch.float64))
    assert torch.equal(tiny[0].argmax(1), expect)


def _combination(grad_i, x, i, alpha):
    """Straightforward per-example SeA combination: softmax over j != i of <u_i, x_j> / alpha, times x_j."""
    others = torch.cat([x[:i], x[i + 1:]])
    scores = torch.nn.functional.normalize(grad_i, dim=0) @ others.T / alpha
    return torch.softmax(scores, 0) @ others, others


def _residual(rows, v):
    """Distance from v to the span of ``rows``."""
    sol = torch.linalg.lstsq(rows.T, v[:, None]).solution
    return float((rows.T @ sol - v[:, None]).norm())


def test_direction_lies_in_the_span_of_the_other_examples_and_ignores_x_i():
    b, d = 8, 32
    x = unit(b, d, 2)
    grad = torch.randn(1, b, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eta = torch.tensor([0.8], dtype=torch.float64)
    alpha = torch.tensor([0.1], dtype=torch.float64)
    x_aug = sea_augment(x, grad, alpha, eta)[0]
    assert torch.allclose(x_aug.norm(dim=1), torch.ones(b, dtype=torch.float64))
    for i in range(b):
        g_hat, others = _combination(grad[0, i], x, i, 0.1)
        assert _residual(others, g_hat) < 1e-12  # in the span of the others
        assert _residual(others, x[i]) > 1e-2  # x_i itself is not
        assert g_hat.norm() <= 1 + 1e-12  # Prop. 1
        expect = torch.nn.functional.normalize(x[i] + 0.8 * torch.nn.functional.normalize(g_hat, dim=0), dim=0)
        assert torch.allclose(x_aug[i], expect, atol=1e-12)
    # changing x_0 itself (its gradient fixed) leaves its combination of the others unchanged
    x2 = x.clone()
    x2[0] = unit(1, d, 9)[0]
    assert torch.allclose(_combination(grad[0, 0], x, 0, 0.1)[0], _combination(grad[0, 0], x2, 0, 0.1)[0])
    assert not torch.allclose(sea_augment(x, grad, alpha, eta)[0, 1:], sea_augment(x2, grad, alpha, eta)[0, 1:])


def test_sea_weights_are_more_adversarial_than_uniform():
    b, d = 16, 24
    x = unit(b, d, 4)
    u = torch.nn.functional.normalize(torch.randn(1, b, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64), dim=-1)
    S = u @ x.T
    q = masked_softmax_weights(S, torch.tensor([0.05], dtype=torch.float64))
    off = ~torch.eye(b, dtype=torch.bool)
    uniform = (S[0] * off).sum(1) / (b - 1)
    assert torch.all((q[0] * S[0]).sum(1) >= uniform - 1e-12)


def test_feature_gradient_equals_autograd_of_the_official_loss():
    x = unit(10, 6, 6).float()
    y = torch.randint(0, 4, (10,), generator=torch.Generator().manual_seed(7))
    W = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(8))
    hp = {"lamda": torch.tensor([0.1, 1.0]), "delta": torch.tensor([0.0, 1.0])}
    G = feature_gradients(Batch(x, y, W, 0, 0), BoundLoss(SmoothedHinge(), hp), 2)
    for k in range(2):
        xx = x.clone().requires_grad_(True)
        z = xx @ W[k].T
        z = z - float(hp["delta"][k]) * torch.nn.functional.one_hot(y, 4)
        loss = float(hp["lamda"][k]) * torch.nn.functional.cross_entropy(z / float(hp["lamda"][k]), y)
        (g,) = torch.autograd.grad(loss, xx)
        assert torch.allclose(G[k] / 10, g, atol=1e-6)  # the official mean-reduced gradient carries 1/b


def test_augment_equals_the_official_get_adv():
    x = unit(12, 8, 10).float()
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(11))
    W = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(12))
    model = torch.nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(W[0])
    for alpha in (0.01, 0.0):
        ref = get_adv(model, x, y, 0.1, 0.0, alpha, 0.8)
        hp = {"lamda": torch.tensor([0.1]), "delta": torch.tensor([0.0]), "alpha": torch.tensor([alpha]), "eta": torch.tensor([0.8])}
        ours = sea_augment(x, feature_gradients(Batch(x, y, W, 0, 0), BoundLoss(SmoothedHinge(), hp), 1), hp["alpha"], hp["eta"])[0]
        assert torch.allclose(ours, ref, atol=1e-6)


def blob_data(n=300, d=12, C=3, seed=0):
    from conftest import make_blobs

    data = make_blobs(n_train=n, d=d, C=C, seed=seed)
    return data["train_x"], data["train_y"]


@pytest.mark.parametrize("delta,alpha", [(0.0, 0.01), (1.0, 0.05), (0.0, 0.0)])
def test_training_equals_the_official_loop(delta, alpha):
    """Same init and data order: featbench's SeA run and the literal official loop give the same weights."""
    x, y = blob_data()
    cfg = dict(lr=1.6, wd=1e-6, lamda=0.1, delta=delta, alpha=alpha, eta=0.8)
    ref = train_reference(x, y, 3, epochs=3, batch_size=64, **cfg)
    ours = train_heads(x, y, 3, SeA, SmoothedHinge(), [cfg], TrainSettings(epochs=3, batch_size=64))
    assert torch.allclose(ours.weight[0], ref, atol=2e-5)


def test_eta_zero_is_exactly_the_baseline_trajectory():
    from featbench.plugins.baseline import NoAugmentation

    x, y = blob_data()
    cfg = dict(lr=1.0, wd=1e-5, lamda=0.1, delta=0.0)
    base = train_heads(x, y, 3, NoAugmentation, SmoothedHinge(), [cfg], TrainSettings(epochs=3, batch_size=64))
    sea = train_heads(x, y, 3, SeA, SmoothedHinge(), [{**cfg, "eta": 0.0, "alpha": 0.01}], TrainSettings(epochs=3, batch_size=64))
    assert torch.equal(base.weight, sea.weight)
    ref = train_reference(x, y, 3, epochs=3, batch_size=64, augment=False, **cfg)
    assert torch.allclose(base.weight[0], ref, atol=1e-6)


def test_last_batch_of_one_stays_finite_and_unaugmented():
    x, y = blob_data(n=129)  # 129 = 2 * 64 + 1
    res = train_heads(x, y, 3, SeA, SmoothedHinge(), [dict(lr=1.6, wd=1e-6, lamda=0.1, delta=0.0, alpha=0.01, eta=0.8)],
                      TrainSettings(epochs=2, batch_size=64))
    assert torch.isfinite(res.weight).all()
    assert res.unaugmented_batches == 2 and res.diverged == (False,)


def test_sea_is_deterministic_given_the_seed():
    x, y = blob_data()
    cfg = [dict(lr=1.6, wd=1e-6, lamda=0.1, delta=0.0, alpha=0.01, eta=0.8)]
    a = train_heads(x, y, 3, SeA, SmoothedHinge(), cfg, TrainSettings(epochs=2, batch_size=64, seed=3))
    b = train_heads(x, y, 3, SeA, SmoothedHinge(), cfg, TrainSettings(epochs=2, batch_size=64, seed=3))
    c = train_heads(x, y, 3, SeA, SmoothedHinge(), cfg, TrainSettings(epochs=2, batch_size=64, seed=4))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
