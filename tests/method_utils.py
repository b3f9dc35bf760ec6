"""Helpers for the per-method tests. The synthetic features, runs built like the trainer builds them and
the generic checks every method must pass (K-stack == K single runs; a degenerate setting == baseline) ship
in ``featbench.testing``, for plugin authors too; this module re-exports them next to a few geometry helpers.

Everything here is deliberately small (n <= 200, d <= 32, a few epochs) so the method tests stay fast.
"""

from __future__ import annotations

import torch

from featbench.api import Batch
from featbench.plugins.losses import CrossEntropy, SmoothedHinge
from featbench.testing import (
    assert_equals_baseline,
    assert_stack_equals_singles,
    configs_for,
    make_run,
    train,
    unit_blobs,
)


def random_heads(K, C, d, seed=0, scale=3.0):
    """Stacked heads (K, C, d) with a realistic scale (trained heads are far from the tiny init)."""
    import math

    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(K, C, d, generator=g) / math.sqrt(d)


def batch_of(x, y, weight, epoch=0, step=0) -> Batch:
    return Batch(x=torch.as_tensor(x), y=torch.as_tensor(y), weight=weight, epoch=epoch, step=step)


def recover_direction(x, x_aug, eta):
    """The unit direction d with ``x_aug = normalize(x + eta d)`` (x unit rows, eta > 0), row-wise,
    for directions with ``<d, x> >= 0`` (e.g. mixes of non-negative features).

    ``s = ||x + eta d||`` solves ``||s x_aug - x|| = eta``, whose two roots multiply to 1 - eta^2; with
    ``<d, x> >= 0`` the true one is the larger, s = <x_aug, x> + sqrt(<x_aug, x>^2 - 1 + eta^2).
    """
    c = (x_aug * x).sum(-1, keepdim=True)
    s = c + torch.sqrt(c * c - 1 + eta * eta)
    return (s * x_aug - x) / eta


def span_residual(v, rows):
    """Relative least-squares residual of vector ``v`` on the span of ``rows`` (m, d)."""
    sol = torch.linalg.lstsq(rows.double().T, v.double().unsqueeze(1)).solution
    return float(torch.linalg.norm(rows.double().T @ sol - v.double().unsqueeze(1)) / torch.linalg.norm(v.double()))


__all__ = ["CrossEntropy", "SmoothedHinge", "assert_equals_baseline", "assert_stack_equals_singles", "batch_of",
           "configs_for", "make_run", "random_heads", "recover_direction", "span_residual", "train", "unit_blobs"]


# Two settings of each method's own hyper-parameters (vectorised ones, so they share one stack).
VARIATIONS = {
    "none": [{}, {}],
    "sea": [{"eta": 0.4, "alpha": 0.01}, {"eta": 0.8, "alpha": 0.05}],
    "sea_neg": [{"eta": 0.4, "alpha": 0.01}, {"eta": 1.0, "alpha": 0.05}],
    "rand": [{"eta": 0.4}, {"eta": 1.0}],
    "adv": [{"eta": 0.01}, {"eta": 0.05}],
    "mixdir": [{"eta": 0.2}, {"eta": 0.8}],
    "mixup": [{"alpha": 0.5}, {"alpha": 2.0}],
    "isda": [{"lambda0": 0.5}, {"lambda0": 5.0}],
    "meada": [{"step_size": 0.1, "beta": 1.0, "steps": 2, "every": 1}, {"step_size": 0.5, "beta": 10.0, "steps": 3, "every": 1}],
    "mixup_hard": [{"alpha": 0.5, "lam_n": 0.8}, {"alpha": 2.0, "lam_n": 0.6}],
}
