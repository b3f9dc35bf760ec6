"""Seeded random draws shared by the random augmenters (Rand, mixdir, mixup, mixup_hard).

Every function takes an explicit ``torch.Generator`` (one of :class:`featbench.api.AugRNG`'s streams) and
draws on the CPU; callers move results to the training device. Draws that do not depend on
hyper-parameters come from ``rng.shared``; draws that do (Beta(alpha_k, alpha_k)) come from
``rng.for_head(k)`` through :func:`beta_per_head`, so head k of a K-stack draws exactly what a single
run of that configuration draws.

This module registers nothing; it is a helper of the plugin modules next to it.
"""

from __future__ import annotations

from collections.abc import Sequence


def permutation(gen, b: int):
    """A uniformly random permutation of range(b) (self-pairs allowed when used as partners); (b,) int64."""
    import torch

    return torch.randperm(b, generator=gen)


def other_index(gen, b: int):
    """For every row i, an index j(i) drawn uniformly from {0..b-1} without i; shape (b,), int64."""
    import torch

    offset = torch.randint(0, b - 1, (b,), generator=gen)
    return (torch.arange(b) + 1 + offset) % b


def dirichlet_off_diagonal(gen, b: int):
    """Row i ~ Dirichlet(1, ..., 1) over the b - 1 indices j != i (uniform on that simplex), diagonal 0.

    Drawn as normalised i.i.d. Exp(1) variates; shape (b, b).
    """
    import torch

    e = -torch.log1p(-torch.rand(b, b, generator=gen, dtype=torch.float64))  # Exp(1), finite
    e.fill_diagonal_(0)
    return (e / e.sum(1, keepdim=True)).float()


def gaussian_off_diagonal(gen, b: int):
    """Signed coefficients: i.i.d. N(0, 1) off the diagonal, 0 on it; shape (b, b)."""
    import torch

    g = torch.randn(b, b, generator=gen)
    g.fill_diagonal_(0)
    return g


def beta(gen, alpha: float, shape: Sequence[int]):
    """Beta(alpha, alpha) draws of ``shape`` (float32), seeded by one draw from ``gen``.

    torch's Beta sampler takes no generator, so the draw goes through numpy's, seeded from the stream:
    the stream advances by exactly one value per call, whatever ``shape`` is.
    """
    import numpy as np
    import torch

    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=tuple(shape)).astype(np.float32))


def beta_per_head(rng, alpha, shape: Sequence[int], device=None):
    """Beta(alpha_k, alpha_k) for every head k from its own stream; ``alpha`` is (K,), result (K, *shape)."""
    import torch

    draws = [beta(rng.for_head(k), float(a), shape) for k, a in enumerate(alpha.tolist())]
    return torch.stack(draws).to(device)
