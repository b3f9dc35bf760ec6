"""Adv (SeA paper Eq. 5, §4.1): the normalised loss gradient as the direction, or raw Eq. 5."""

from __future__ import annotations

import torch
from method_utils import assert_equals_baseline, batch_of, configs_for, make_run, random_heads, unit_blobs

from featbench.plugins.adv import Adv
from featbench.plugins.losses import smoothed_hinge_rows


def per_example_gradients(x, y, w, lamda, delta):
    """d loss_i / d x_i by autograd, one example at a time."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].clone().requires_grad_(True)
        hp = torch.tensor([lamda], dtype=x.dtype), torch.tensor([delta], dtype=x.dtype)
        loss = smoothed_hinge_rows((xi @ w.T).unsqueeze(0), y[i:i + 1, None], None, *hp)
        (g,) = torch.autograd.grad(loss.sum(), xi)
        out.append(g[0])
    return torch.stack(out)


def test_step_is_along_the_normalised_per_example_gradient():
    x, y = unit_blobs(n=12, d=16, C=4, seed=1)
    x = x.astype("float64")  # saturated rows (lamda = 0.1) have gradients ~1e-6: keep fp32 rounding out
    w = random_heads(2, 4, 16, seed=2).double()
    configs = configs_for(Adv, None, {"eta": 0.05, "lamda": 0.1}, {"eta": 0.2, "lamda": 1.0, "delta": 1.0})
    got = Adv(make_run(Adv, configs, x, y, 4)).augment(batch_of(x, y, w)).x
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for k, c in enumerate(configs):
        g = per_example_gradients(xt, yt, w[k], float(torch.tensor(c["lamda"])), c["delta"])
        v = xt + c["eta"] * g / g.norm(dim=1, keepdim=True)
        torch.testing.assert_close(got[k], v / v.norm(dim=1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_raw_mode_is_literal_eq5():
    x, y = unit_blobs(n=12, d=16, C=4, seed=1)
    w = random_heads(1, 4, 16, seed=2)
    cfg = configs_for(Adv, None, {"eta": 0.3, "normalize_grad": "false", "lamda": 0.5})
    got = Adv(make_run(Adv, cfg, x, y, 4)).augment(batch_of(x, y, w)).x[0]
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    want = xt + 0.3 * per_example_gradients(xt, yt, w[0], 0.5, 0.0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert float((got.norm(dim=1) - 1).abs().max()) > 1e-3  # no re-normalisation


def test_a_small_step_raises_the_loss():
    x, y = unit_blobs(n=32, d=16, C=4, seed=3)
    w = random_heads(1, 4, 16, seed=4)
    cfg = configs_for(Adv, None, {"eta": 0.01, "lamda": 0.5})
    xa = Adv(make_run(Adv, cfg, x, y, 4)).augment(batch_of(x, y, w)).x
    lam, dlt = torch.tensor([0.5]), torch.tensor([0.0])
    yt = torch.as_tensor(y)[:, None]
    before = smoothed_hinge_rows(torch.as_tensor(x) @ w.transpose(1, 2), yt, None, lam, dlt)
    after = smoothed_hinge_rows(xa @ w.transpose(1, 2), yt, None, lam, dlt)
    assert torch.all(after > before)


def test_raw_mode_with_eta_zero_is_the_baseline_exactly():
    x, y = unit_blobs(n=70, d=12, C=3)
    assert_equals_baseline(Adv, configs_for(Adv, None, {"eta": 0.0, "normalize_grad": "false"}, lr=1.0)[0], x, y, 3)
