"""SeA_Neg (SeA paper §4.1, "Effect of directions"): SeA's projection of g_neg = sum_c p_c w_c."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from method_utils import (
    assert_stack_equals_singles,
    batch_of,
    configs_for,
    make_run,
    random_heads,
    recover_direction,
    span_residual,
    unit_blobs,
)

from featbench.plugins.sea import SeA
from featbench.plugins.sea_neg import SeANeg


def reference_sea_neg(x, y, w, lamda, delta, alpha, eta, include_target=True):
    """Per example, written out: p from the smoothed hinge, g = sum_c p_c w_c, softmax over j != i."""
    b, C = x.shape[0], w.shape[0]
    out = torch.empty_like(x)
    for i in range(b):
        z = w @ x[i]
        z = z - delta * F.one_hot(y[i], C)
        p = torch.softmax(z / lamda, 0)
        g = sum(p[c] * w[c] for c in range(C) if include_target or c != y[i])
        u = g / max(float(g.norm()), 1e-12)
        others = [j for j in range(b) if j != i]
        s = torch.stack([u @ x[j] for j in others]) / alpha
        q = torch.softmax(s, 0)
        direction = sum(q[k] * x[j] for k, j in enumerate(others))
        direction = direction / direction.norm()
        v = x[i] + eta * direction
        out[i] = v / v.norm()
    return out


@pytest.mark.parametrize("include_target", ["true", "false"])
def test_equals_per_example_reference(include_target):
    x, y = unit_blobs(n=12, d=16, C=4, seed=3)
    w = random_heads(2, 4, 16, seed=1)
    configs = configs_for(SeANeg, None, {"eta": 0.6, "alpha": 0.05, "lamda": 0.1, "delta": 0.0, "include_target": include_target},
                          {"eta": 1.0, "alpha": 0.5, "lamda": 1.0, "delta": 1.0, "include_target": include_target})
    run = make_run(SeANeg, configs, x, y, 4)
    got = SeANeg(run).augment(batch_of(x, y, w)).x
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for k, c in enumerate(configs):
        want = reference_sea_neg(xt, yt, w[k], c["lamda"], c["delta"], c["alpha"], c["eta"], include_target == "true")
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-5)


def test_direction_lies_in_the_span_of_the_other_rows_and_rows_stay_unit():
    x, y = unit_blobs(n=8, d=32, C=3, seed=4)  # b - 1 = 7 < d = 32: the span test is not vacuous
    w = random_heads(1, 3, 32, seed=2)
    eta = 0.7
    run = make_run(SeANeg, configs_for(SeANeg, None, {"eta": eta}), x, y, 3)
    xa = SeANeg(run).augment(batch_of(x, y, w)).x[0]
    xt = torch.as_tensor(x)
    torch.testing.assert_close(xa.norm(dim=1), torch.ones(8))
    d = recover_direction(xt, xa, eta)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(8), atol=1e-4, rtol=0)
    for i in range(8):
        assert span_residual(d[i], torch.cat([xt[:i], xt[i + 1:]])) < 1e-4
        assert span_residual(xt[i], torch.cat([xt[:i], xt[i + 1:]])) > 0.05  # x_i itself is not in that span


def test_confident_correct_predictions_point_at_same_class_rows_unlike_sea():
    # Classes sit on disjoint coordinates; the heads predict them perfectly and confidently.
    C, d, per = 3, 12, 4
    g = torch.Generator().manual_seed(0)
    y = torch.arange(C).repeat_interleave(per)
    x = torch.zeros(C * per, d)
    for i, c in enumerate(y.tolist()):
        x[i, 4 * c:4 * c + 4] = torch.rand(4, generator=g) + 0.5
    x = F.normalize(x, dim=1)
    w = torch.zeros(1, C, d)
    for c in range(C):
        w[0, c, 4 * c:4 * c + 4] = 10.0
    cfg = {"eta": 0.5, "alpha": 0.01, "lamda": 1.0}
    neg = SeANeg(make_run(SeANeg, configs_for(SeANeg, None, cfg), x.numpy(), y.numpy(), C)).augment(batch_of(x, y, w)).x[0]
    sea = SeA(make_run(SeA, configs_for(SeA, None, cfg), x.numpy(), y.numpy(), C)).augment(batch_of(x, y, w)).x[0]
    same = y[:, None] == y[None, :]
    own_mass = lambda xa: float((((xa @ x.T) * same).sum(1) / ((xa @ x.T)).sum(1)).mean())  # noqa: E731
    assert own_mass(neg) > 0.99  # stays inside its own class block
    assert own_mass(sea) < own_mass(x) - 0.05  # SeA moves towards the other classes


def test_excluding_the_target_changes_the_direction():
    x, y = unit_blobs(n=16, d=16, C=4, seed=5)
    w = random_heads(1, 4, 16, seed=3, scale=0.5)
    outs = []
    for flag in ("true", "false"):
        run = make_run(SeANeg, configs_for(SeANeg, None, {"include_target": flag, "lamda": 1.0}), x, y, 4)
        outs.append(SeANeg(run).augment(batch_of(x, y, w)).x)
    assert float((outs[0] - outs[1]).abs().max()) > 1e-3


def test_stack_with_mixed_eta_alpha_equals_single_runs():
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(SeANeg, None, {"eta": 0.0}, {"eta": 0.4, "alpha": 0.0}, {"eta": 1.0, "alpha": 0.05, "lr": 0.5},
                          include_target="false")
    assert_stack_equals_singles(SeANeg, configs, x, y, 3)
