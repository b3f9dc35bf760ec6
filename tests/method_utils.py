"""Helpers for the per-method tests: tiny synthetic features, runs built like the trainer builds them, and
the two generic checks every method must pass (K-stack == K single runs; a degenerate setting == baseline).

Everything here is deliberately small (n <= 200, d <= 32, a few epochs) so the method tests stay fast.
"""

from __future__ import annotations

import math

import torch
from conftest import make_blobs

from featbench.api import AugRNG, Batch, BoundLoss, RunInfo, seed_stream
from featbench.plugins.baseline import NoAugmentation
from featbench.plugins.losses import CrossEntropy, SmoothedHinge
from featbench.training.grid import expand_grid, hparams_for
from featbench.training.trainer import AUGMENT_STREAM, TrainSettings, hp_options, hp_tensors, train_heads


def unit_blobs(n=96, d=16, C=4, seed=0, spread=0.5):
    """Training rows of conftest's clustered non-negative unit-norm blobs: (n, d) float32, (n,) int64."""
    data = make_blobs(n_train=n, n_test=0, d=d, C=C, seed=seed, spread=spread)
    return data["train_x"], data["train_y"]


def configs_for(aug_cls, loss=None, *rows, **common):
    """Full configurations (every hyper-parameter, defaults filled in) for ``aug_cls`` with ``loss`` (a Loss
    class or instance; default the smoothed hinge): one per mapping in ``rows``, each updated with
    ``common``; no rows gives the defaults."""
    params = hparams_for(loss if isinstance(loss, type) else type(loss or SmoothedHinge()), aug_cls)
    out = []
    for row in rows or ({},):
        values = {k: [v] for k, v in {**common, **row}.items()}
        (cfg,) = expand_grid(params, values)
        out.append(cfg)
    return out


def make_run(aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0) -> RunInfo:
    """A RunInfo built exactly as ``train_heads`` builds it (for calling augment() directly)."""
    loss = loss or SmoothedHinge()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    hp = hp_tensors(configs, "cpu")
    options = hp_options(configs)
    K = len(configs)
    return RunInfo(train_x=xt, train_y=yt, num_classes=C, hp=hp, num_heads=K, epochs=epochs, batch_size=batch_size,
                   steps_per_epoch=math.ceil(len(y) / batch_size), loss=BoundLoss(loss, {**hp, **options}),
                   rng=AugRNG(seed_stream(seed, AUGMENT_STREAM), K), device=torch.device("cpu"), options=options)


def random_heads(K, C, d, seed=0, scale=3.0):
    """Stacked heads (K, C, d) with a realistic scale (trained heads are far from the tiny init)."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(K, C, d, generator=g) / math.sqrt(d)


def batch_of(x, y, weight, epoch=0, step=0) -> Batch:
    return Batch(x=torch.as_tensor(x), y=torch.as_tensor(y), weight=weight, epoch=epoch, step=step)


def train(aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0):
    """Train a stack on the generic (autograd) path; returns the weights (K, C, d).

    Methods are compared with each other bit for bit on the generic path; the closed-form fast paths are
    proven equal to it separately (tests/training/test_fast_*.py)."""
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, seed=seed, fast=False)
    return train_heads(x, y, C, aug_cls, loss or SmoothedHinge(), configs, settings).weight


def assert_stack_equals_singles(aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, atol=2e-5):
    """K configurations trained together equal K separate runs with the same seed."""
    stack = train(aug_cls, configs, x, y, C, loss, epochs, batch_size, seed)
    for k, cfg in enumerate(configs):
        single = train(aug_cls, [cfg], x, y, C, loss, epochs, batch_size, seed)[0]
        torch.testing.assert_close(stack[k], single, atol=atol, rtol=1e-4, msg=f"head {k} ({cfg}) differs from its single run")
    return stack


def assert_equals_baseline(aug_cls, config, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, exact=True):
    """Training with ``config`` gives the same heads as the no-augmentation baseline."""
    loss = loss or SmoothedHinge()
    got = train(aug_cls, [config], x, y, C, loss, epochs, batch_size, seed)
    base_cfg = {k: v for k, v in config.items() if k in ("lr", "wd", *(h.name for h in loss.hparams))}
    want = train(NoAugmentation, [base_cfg], x, y, C, loss, epochs, batch_size, seed)
    if exact:
        assert torch.equal(got, want), float((got - want).abs().max())
    else:
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


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
