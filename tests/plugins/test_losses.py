"""The smoothed hinge (SeA Eq. 15) and cross-entropy losses (SeA paper §3.2, Eqs. 12-16)."""

from __future__ import annotations

import math

import pytest
import torch

from featbench.api import Targets
from featbench.plugins.losses import CrossEntropy, SmoothedHinge


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def hp(lamda, delta, K=1):
    return {"lamda": torch.full((K,), float(lamda)), "delta": torch.full((K,), float(delta))}


def eq15(z, y, lamda, delta):
    """Literal Eq. 15: lamda * log(1 + sum_{c != y} exp((z_c + delta - z_y) / lamda))."""
    out = []
    for zi, yi in zip(z, y):
        s = sum(math.exp((zi[c] + delta - zi[yi]) / lamda) for c in range(len(zi)) if c != yi)
        out.append(lamda * math.log1p(s))
    return torch.tensor(out)


def hinge(z, y, delta):
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.clone().scatter_(1, y[:, None], float("-inf")).max(1).values
    return torch.clamp(delta + other - zy, min=0)


def test_equals_cross_entropy_at_lamda_1_delta_0():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(1, 20, 7, generator=g), torch.randint(0, 7, (20,), generator=g)
    ours = SmoothedHinge().per_row(z, Targets.hard(y), hp(1, 0))[0]
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(z[0], y, reduction="none"), atol=1e-12)
    assert torch.allclose(CrossEntropy().per_row(z, Targets.hard(y), {})[0], ours, atol=1e-12)


@pytest.mark.parametrize("lamda,delta", [(1, 0), (0.1, 0), (0.1, 1), (0.05, 1), (0.5, 0.3)])
def test_equals_eq15_literally(lamda, delta):
    g = torch.Generator().manual_seed(1)
    z, y = 3 * torch.randn(1, 30, 5, generator=g), torch.randint(0, 5, (30,), generator=g)
    ours = SmoothedHinge().per_row(z, Targets.hard(y), hp(lamda, delta))[0]
    assert torch.allclose(ours, eq15(z[0].tolist(), y.tolist(), lamda, delta), atol=1e-10)


def test_bounded_by_hinge_and_converges_to_it():
    g = torch.Generator().manual_seed(2)
    z, y = 2 * torch.randn(1, 50, 6, generator=g), torch.randint(0, 6, (50,), generator=g)
    h = hinge(z[0], y, 1.0)
    gaps = []
    for lamda in (1, 0.1, 0.01, 0.001):
        loss = SmoothedHinge().per_row(z, Targets.hard(y), hp(lamda, 1.0))[0]
        assert torch.all(loss >= h - 1e-12) and torch.all(loss <= h + lamda * math.log(6) + 1e-12)
        gaps.append((loss - h).max().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01


def test_equals_the_max_of_eq14_at_the_closed_form_maximiser():
    g = torch.Generator().manual_seed(3)
    z, y, lamda, delta = torch.randn(1, 10, 4, generator=g), torch.randint(0, 4, (10,), generator=g), 0.3, 0.7
    margin = delta * (1 - torch.nn.functional.one_hot(y, 4))
    p = torch.softmax((z[0] + margin) / lamda, 1)  # Eq. 17
    eq14 = (p * (z[0] + margin - z[0].gather(1, y[:, None]))).sum(1) - lamda * (p * p.log()).sum(1)
    assert torch.allclose(SmoothedHinge().per_row(z, Targets.hard(y), hp(lamda, delta))[0], eq14, atol=1e-12)


@pytest.mark.parametrize("targets_kind", ["hard", "pair", "dense"])
def test_closed_form_logit_gradient_equals_autograd(targets_kind):
    g = torch.Generator().manual_seed(4)
    K, r, C = 3, 12, 5
    z = torch.randn(K, r, C, generator=g)
    y = torch.randint(0, C, (r,), generator=g)
    if targets_kind == "hard":
        t = Targets.hard(y)
    elif targets_kind == "pair":
        t = Targets.pair(y, torch.randint(0, C, (r,), generator=g), torch.rand(r, generator=g))
    else:
        t = Targets.dense(torch.softmax(torch.randn(r, C, generator=g), 1))
    h = {"lamda": torch.tensor([1.0, 0.1, 0.05]), "delta": torch.tensor([0.0, 1.0, 0.5])}
    for loss, params in ((SmoothedHinge(), h), (CrossEntropy(), {})):
        closed = loss.grad_logits(z, t, params)
        zz = z.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(loss.per_row(zz, t, params).sum(), zz)
        assert torch.allclose(closed, auto, atol=1e-10)


def test_feature_gradient_matches_finite_differences():
    """Prop. 4: d loss / d x = W^T (p - e_y) with p = softmax((z - delta e_y) / lamda)."""
    g = torch.Generator().manual_seed(5)
    W, x, y = torch.randn(4, 6, generator=g), torch.randn(6, generator=g), torch.tensor([2])
    params = hp(0.2, 0.5)

    def f(v):
        return SmoothedHinge().per_row((v @ W.T)[None, None], Targets.hard(y), params).item()

    closed = (SmoothedHinge().grad_logits((x @ W.T)[None, None], Targets.hard(y), params)[0, 0] @ W)
    eps = 1e-6
    fd = torch.tensor([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in torch.eye(6)])
    assert torch.allclose(closed, fd, atol=1e-7)


def test_pair_targets_are_the_convex_combination_of_two_hard_losses():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(2, 8, 4, generator=g)
    ya, yb, lam = torch.randint(0, 4, (8,), generator=g), torch.randint(0, 4, (8,), generator=g), torch.rand(8, generator=g)
    params = {"lamda": torch.tensor([0.1, 1.0]), "delta": torch.tensor([1.0, 0.0])}
    loss = SmoothedHinge()
    mixed = loss.per_row(z, Targets.pair(ya, yb, lam), params)
    expect = lam * loss.per_row(z, Targets.hard(ya), params) + (1 - lam) * loss.per_row(z, Targets.hard(yb), params)
    assert torch.allclose(mixed, expect, atol=1e-12)
    # for CE the pair equals soft-label CE with the mixed target
    soft = CrossEntropy().per_row(z, Targets.dense(Targets.pair(ya, yb, lam).dense_probs(4)), {})
    assert torch.allclose(CrossEntropy().per_row(z, Targets.pair(ya, yb, lam), {}), soft, atol=1e-12)


def test_reparametrisation_identity_of_the_hinge_with_delta_0():
    """SeA paper §3.2, Eqs. 12-16: hinge with (lr, wd, W0) == CE on V = W / lamda with (lr / lamda, wd * lamda, W0 / lamda)."""
    g = torch.Generator().manual_seed(7)
    X, y = torch.nn.functional.normalize(torch.randn(64, 10, generator=g), dim=1), torch.randint(0, 3, (64,), generator=g)
    lamda, lr, wd = 0.1, 0.5, 1e-3
    W = torch.randn(1, 3, 10, generator=g) * 0.1
    V = W / lamda
    bw, bv = torch.zeros_like(W), torch.zeros_like(V)
    for step in range(200):
        xb, yb = X[(step * 16) % 64:(step * 16) % 64 + 16], y[(step * 16) % 64:(step * 16) % 64 + 16]
        for M, buf, loss, params, lr_, wd_ in ((W, bw, SmoothedHinge(), hp(lamda, 0), lr, wd), (V, bv, CrossEntropy(), {}, lr / lamda, wd * lamda)):
            Mg = M.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss.per_row(xb @ Mg.transpose(1, 2), Targets.hard(yb), params).mean(), Mg)
            buf.mul_(0.9).add_(grad + wd_ * M)
            M.sub_(lr_ * buf)
    assert torch.allclose(W / lamda, V, atol=1e-10)
