"""Every identity of featbench.directions and featbench.training.fastpath against the direct computation, in float64 (to ~1e-12)."""

from __future__ import annotations

import math

import pytest
import torch

import featbench.directions as directions
from featbench.api import Augmented, Batch, BoundLoss, Targets
from featbench.directions import (
    SUBNORMAL_MARGIN,
    batch_gram,
    dense_grad,
    fast_softmax,
    feature_gradients,
    gradient_similarities,
    gradient_sq_norms,
    linear_weight_grad,
    masked_softmax_weights,
    push_along,
    push_mix,
    row_mix_logits,
    row_mix_weight_grad,
    sea_augment,
    select_heads,
    softmax_without_subnormals,
    span_direction,
    stacked_logits,
)
from featbench.plugins.losses import CrossEntropy, SmoothedHinge
from featbench.plugins.sea import sea_fused_gradients
from featbench.training.fastpath import closed_form_eligible, closed_form_gradients
from featbench.training.trainer import head_gradients

F64 = torch.float64
TOL = dict(atol=1e-12, rtol=1e-10)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def unit_rows(b, d, seed=0, nonneg=True):
    x = rand(b, d, seed=seed)
    return torch.nn.functional.normalize(x.abs() if nonneg else x, dim=-1)


def hinge(K, seed=0):
    g = torch.Generator().manual_seed(seed)
    hp = {"lamda": torch.rand(K, generator=g, dtype=F64) + 0.05, "delta": (torch.rand(K, generator=g, dtype=F64) > 0.5).to(F64)}
    return BoundLoss(SmoothedHinge(), hp)


def labels(b, C, seed=0):
    return torch.randint(0, C, (b,), generator=torch.Generator().manual_seed(seed))


K, B, C, D = 3, 10, 5, 16


def test_stacked_logits_and_linear_weight_gradient():
    x, w = unit_rows(B, D, 1), rand(K, C, D, seed=2)
    assert torch.allclose(stacked_logits(x, w), torch.stack([x @ w[k].T for k in range(K)]), **TOL)
    xk = rand(K, B, D, seed=3)
    assert torch.allclose(stacked_logits(xk, w), xk @ w.transpose(1, 2), **TOL)
    dz = rand(K, B, C, seed=4)
    assert torch.allclose(linear_weight_grad(dz, x), torch.stack([dz[k].T @ x for k in range(K)]), **TOL)
    assert torch.allclose(linear_weight_grad(dz, xk), torch.stack([dz[k].T @ xk[k] for k in range(K)]), **TOL)


@pytest.mark.parametrize("loss", [SmoothedHinge(), CrossEntropy()])
@pytest.mark.parametrize("case", ["shared", "per_head", "row_weight", "head_row_weight", "pair", "dense"])
def test_closed_form_weight_gradient_equals_autograd(loss, case):
    """dL/dW = (w * dL/dZ)^T X for any per-row loss, targets and row weights."""
    x, w, y = unit_rows(B, D, 5), rand(K, C, D, seed=6), labels(B, C, 7)
    targets, row_weight = Targets.hard(y), None
    if case == "per_head":
        x = rand(K, B, D, seed=8)
    elif case == "row_weight":
        row_weight = torch.rand(B, generator=torch.Generator().manual_seed(9), dtype=F64)
    elif case == "head_row_weight":
        row_weight = torch.rand(K, B, generator=torch.Generator().manual_seed(9), dtype=F64)
    elif case == "pair":
        targets = Targets.pair(y, labels(B, C, 10), torch.rand(K, B, generator=torch.Generator().manual_seed(11), dtype=F64))
    elif case == "dense":
        targets = Targets.dense(torch.softmax(rand(B, C, seed=12), -1))
    bound = BoundLoss(loss, hinge(K).hp)
    aug = Augmented(x, targets, row_weight=row_weight)
    assert closed_form_eligible(aug, bound)
    assert torch.allclose(dense_grad(closed_form_gradients(aug, w, bound)), head_gradients(aug, w, bound), **TOL)


def test_terms_that_need_autograd_are_not_eligible():
    x, y = unit_rows(B, D), labels(B, C)
    bound = hinge(K)
    assert not closed_form_eligible(Augmented(x, Targets.hard(y), logit_adjust=lambda z, w: z), bound)
    assert not closed_form_eligible(Augmented(x, Targets.hard(y), extra_loss=lambda z, w, x: z.sum()), bound)


@pytest.mark.parametrize("via_gram", [True, False])
def test_feature_gradient_geometry_without_forming_g(via_gram):
    """<g_i, x_j> = [E Z^T]_ij and ||g_i||^2 = [E W W^T E^T]_ii for G = E W."""
    x, w, dz = unit_rows(B, D, 13), rand(K, C, D, seed=14), rand(K, B, C, seed=15)
    g = dz @ w
    assert torch.allclose(gradient_similarities(dz, stacked_logits(x, w)), g @ x.T, **TOL)
    assert torch.allclose(gradient_sq_norms(dz, w, via_gram=via_gram), g.square().sum(-1), **TOL)


def test_gram_matrix_is_shared_and_row_mixes_need_no_second_pass_over_d():
    """Logits of M X are M Z; the weight gradient of rows M X is (M^T E)^T X."""
    x, w, y = unit_rows(B, D, 16), rand(K, C, D, seed=17), labels(B, C, 18)
    assert torch.allclose(batch_gram(x), x @ x.T, **TOL)
    mix = rand(K, B, B, seed=19)
    x_mix = mix @ x
    assert torch.allclose(row_mix_logits(mix, stacked_logits(x, w)), x_mix @ w.transpose(1, 2), **TOL)
    bound = hinge(K, 20)
    dz = bound.grad_logits(x_mix @ w.transpose(1, 2), Targets.hard(y)) / B
    expect = head_gradients(Augmented(x_mix, Targets.hard(y)), w, bound)
    assert torch.allclose(row_mix_weight_grad(mix, dz, x), expect, **TOL)


@pytest.mark.parametrize("nonneg", [True, False])
def test_normalised_push_is_a_row_mix(nonneg):
    """normalize(X + eta normalize(Q X)) = M X with M from Q and X X^T only; eta = 0 gives the identity."""
    x = unit_rows(B, D, 21, nonneg)
    q = masked_softmax_weights(rand(K + 1, B, B, seed=22), torch.tensor([0.05, 1.0, 0.0, 0.3], dtype=F64))
    eta = torch.tensor([0.8, 0.2, 0.4, 0.0], dtype=F64)
    mix = push_mix(q, batch_gram(x), eta)
    direct = push_along(x, span_direction(q, x.expand(K + 1, B, D)), eta)
    assert torch.allclose(mix @ x, direct, **TOL)
    assert torch.equal(mix[3], torch.eye(B, dtype=F64))


def sea_batch(b=B, d=D, C=C, K=4, seed=0):
    x, w, y = unit_rows(b, d, seed + 30), rand(K, C, d, seed=seed + 31), labels(b, C, seed + 32)
    hp = {**hinge(K, seed + 33).hp, "alpha": torch.tensor([0.01, 0.0, 0.5, 0.02], dtype=F64)[:K],
          "eta": torch.tensor([0.8, 0.4, 0.0, 1.0], dtype=F64)[:K]}
    return Batch(x=x, y=y, weight=w, epoch=0, step=0), BoundLoss(SmoothedHinge(), hp)


@pytest.mark.parametrize("active", [None, torch.tensor([0, 1, 3])])  # all heads, or only those with eta != 0
@pytest.mark.parametrize("shape", [(B, D, C), (12, 6, 9), (16, 40, 20)])  # C < b, d < b, C > b
def test_fused_sea_step_equals_the_generic_sea_step(shape, active):
    b, d, C = shape
    batch, loss = sea_batch(b, d, C)
    hp = loss.hp
    x_aug = sea_augment(batch.x, feature_gradients(batch, loss, 4), hp["alpha"], hp["eta"])
    expect = head_gradients(Augmented(x_aug, Targets.hard(batch.y)), batch.weight, loss)
    fused = dense_grad(sea_fused_gradients(batch.x, batch.y, batch.weight, loss, hp["alpha"], hp["eta"], active))
    assert torch.allclose(fused, expect, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("active", [None, torch.tensor([], dtype=torch.int64)])
def test_fused_sea_with_eta_zero_is_the_closed_form_baseline_bit_for_bit(active):
    batch, loss = sea_batch()
    hp = {**loss.hp, "eta": torch.zeros(4, dtype=F64)}
    fused = sea_fused_gradients(batch.x, batch.y, batch.weight, loss, hp["alpha"], hp["eta"], active)
    base = closed_form_gradients(Augmented(batch.x, Targets.hard(batch.y)), batch.weight, loss)
    assert torch.equal(fused.dz, base.dz) and torch.equal(fused.x, base.x)


def test_selecting_heads_subsets_every_per_head_hyper_parameter():
    loss = BoundLoss(SmoothedHinge(), {**hinge(4).hp, "name": "literal"})
    sub = select_heads(loss, torch.tensor([2, 0]))
    assert torch.equal(sub.hp["lamda"], loss.hp["lamda"][[2, 0]]) and sub.hp["name"] == "literal"


@pytest.mark.parametrize("capability", ["AVX512", "AVX2", "DEFAULT"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_softmax_equals_torch_softmax_on_every_route(monkeypatch, capability, dtype):
    monkeypatch.setattr(directions, "_cpu_capability", lambda: capability)
    g = torch.Generator().manual_seed(5)
    kcr = torch.randn(6, 10, 70, generator=g, dtype=dtype) * 8
    cases = [
        (kcr.transpose(1, 2), -1),  # stacked_logits' (K, r, C) view of a (K, C, r) product
        (kcr.transpose(1, 2).contiguous(), -1),  # a contiguous (K, r, C)
        (torch.randn(6, 70, 3, generator=g, dtype=dtype), 2),  # 3 classes
        (torch.randn(4, 9, 2, 40, generator=g, dtype=dtype), -1),  # rows long enough for the kernel
        (kcr, 1),  # not over the last dimension
        (torch.randn(7, generator=g, dtype=dtype), 0),  # one row
    ]
    for scores, dim in cases:
        torch.testing.assert_close(fast_softmax(scores, dim), torch.softmax(scores, dim), rtol=1e-6, atol=1e-7)


def test_fast_softmax_keeps_the_layout_of_short_rows(monkeypatch):
    monkeypatch.setattr(directions, "_cpu_capability", lambda: "AVX512")
    kcr = torch.randn(6, 10, 70)
    assert fast_softmax(kcr.transpose(1, 2)).transpose(1, 2).is_contiguous()  # rerouted, no copy either way
    assert fast_softmax(torch.randn(6, 70, 16)).is_contiguous()  # 16 float32 fill a register: torch.softmax
    monkeypatch.setattr(directions, "_cpu_capability", lambda: "DEFAULT")
    assert fast_softmax(kcr.transpose(1, 2)).is_contiguous()  # unknown CPU: torch.softmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_without_subnormals_equals_softmax_and_leaves_no_subnormal(dtype):
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 64, 64, generator=g, dtype=dtype) * (30.0 if dtype == torch.float32 else 300.0)
    scores.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))  # SeA's masked diagonal
    plain = torch.softmax(scores, -1)
    tiny = torch.finfo(dtype).tiny
    assert ((plain > 0) & (plain < tiny)).any()  # the sharp softmax does make subnormals
    fast = softmax_without_subnormals(scores)
    assert not ((fast > 0) & (fast < tiny)).any()
    assert not ((fast > 0) & (fast < tiny * 1e11)).any()  # products with factors above n * e^-30 stay normal too
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-20 if dtype == torch.float32 else 1e-280)
    assert torch.equal(fast == 0, (plain < fast.amax(-1, keepdim=True) * torch.exp(torch.tensor(
        math.log(tiny) + SUBNORMAL_MARGIN, dtype=dtype))))  # exactly the tail is dropped
    assert torch.all(fast.diagonal(dim1=-2, dim2=-1) == 0)

