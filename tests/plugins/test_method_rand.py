"""Rand (SeA paper §4.1): a Dirichlet(1) random direction in the span of the other batch rows."""

from __future__ import annotations

import torch
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

from featbench.api import AugRNG
from featbench.plugins.draws import dirichlet_off_diagonal, gaussian_off_diagonal
from featbench.plugins.rand import Rand


def test_dirichlet_rows_lie_on_the_simplex_without_self():
    q = dirichlet_off_diagonal(torch.Generator().manual_seed(0), 9)
    assert torch.all(q.diagonal() == 0) and torch.all(q >= 0)
    torch.testing.assert_close(q.sum(1), torch.ones(9))


def test_dirichlet_is_uniform_on_the_simplex_in_the_mean_and_variance():
    g = torch.Generator().manual_seed(1)
    b, draws = 6, 4000
    qs = torch.stack([dirichlet_off_diagonal(g, b) for _ in range(draws)])
    off = qs[:, ~torch.eye(b, dtype=torch.bool)]
    m = b - 1  # Dirichlet(1,...,1) over m entries: mean 1/m, variance (m-1)/(m^2 (m+1))
    assert abs(float(off.mean()) - 1 / m) < 0.005
    assert abs(float(off.var()) - (m - 1) / (m * m * (m + 1))) < 0.004


def test_signed_coefficients_have_both_signs_and_no_self():
    g = gaussian_off_diagonal(torch.Generator().manual_seed(2), 10)
    assert torch.all(g.diagonal() == 0) and (g < 0).any() and (g > 0).any()


def test_equals_per_example_reference_with_the_same_draws():
    x, y = unit_blobs(n=10, d=16, C=3, seed=1)
    configs = configs_for(Rand, None, {"eta": 0.3}, {"eta": 1.0})
    run = make_run(Rand, configs, x, y, 3, seed=7)
    got = Rand(run).augment(batch_of(x, y, random_heads(2, 3, 16))).x
    twin = AugRNG(run.rng.seed, 2)  # the same seed: the same shared stream
    q = dirichlet_off_diagonal(twin.shared, 10)
    xt = torch.as_tensor(x)
    for k, c in enumerate(configs):
        for i in range(10):
            d = sum(q[i, j] * xt[j] for j in range(10) if j != i)
            v = xt[i] + c["eta"] * d / d.norm()
            torch.testing.assert_close(got[k, i], v / v.norm(), atol=1e-6, rtol=1e-5)


def test_direction_lies_in_the_span_of_the_other_rows():
    x, y = unit_blobs(n=8, d=32, C=3, seed=2)
    for coeffs in ("dirichlet", "signed"):
        run = make_run(Rand, configs_for(Rand, None, {"eta": 0.5, "coeffs": coeffs}), x, y, 3)
        xa = Rand(run).augment(batch_of(x, y, random_heads(1, 3, 32))).x[0]
        d = recover_direction(torch.as_tensor(x), xa, 0.5)
        xt = torch.as_tensor(x)
        for i in range(8):
            assert span_residual(d[i], torch.cat([xt[:i], xt[i + 1:]])) < 1e-4


def test_large_batches_of_non_negative_features_push_towards_the_batch_mean():
    # SeA paper §4.1: with b = 256 a Dirichlet(1) mix of post-ReLU features is almost the batch mean.
    x, y = unit_blobs(n=256, d=32, C=4, seed=3)
    q = dirichlet_off_diagonal(torch.Generator().manual_seed(0), 256)
    xt = torch.as_tensor(x)
    mix = torch.nn.functional.normalize(q @ xt, dim=1)
    mean = torch.nn.functional.normalize(xt.mean(0), dim=0)
    assert float((mix @ mean).min()) > 0.99


def test_stack_equals_single_runs():
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(Rand, None, {"eta": 0.0}, {"eta": 0.4}, {"eta": 1.0, "lr": 0.5}, coeffs="signed")
    assert_stack_equals_singles(Rand, configs, x, y, 3)
