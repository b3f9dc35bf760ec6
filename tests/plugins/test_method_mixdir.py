"""MixDir (SeA paper Fig. 4): one random other example of the batch as the direction, hard labels."""

from __future__ import annotations

import torch
from method_utils import batch_of, configs_for, make_run, random_heads, unit_blobs

from featbench.api import AugRNG
from featbench.plugins.draws import other_index
from featbench.plugins.mixdir import MixDir


def test_partner_is_never_self_and_uniform_over_the_others():
    g = torch.Generator().manual_seed(0)
    b, draws = 5, 8000
    counts = torch.zeros(b, b)
    for _ in range(draws):
        j = other_index(g, b)
        counts[torch.arange(b), j] += 1
    assert torch.all(counts.diagonal() == 0)
    off = counts[~torch.eye(b, dtype=torch.bool)] / draws
    assert float((off - 1 / (b - 1)).abs().max()) < 0.03


def test_equals_a_convex_mix_with_weight_one_over_one_plus_eta():
    x, y = unit_blobs(n=10, d=16, C=3, seed=1)
    configs = configs_for(MixDir, None, {"eta": 0.25}, {"eta": 1.0})
    run = make_run(MixDir, configs, x, y, 3, seed=5)
    aug = MixDir(run).augment(batch_of(x, y, random_heads(2, 3, 16)))
    j = other_index(AugRNG(run.rng.seed, 2).shared, 10)  # the same draw, from a twin stream
    xt = torch.as_tensor(x)
    for k, c in enumerate(configs):
        lam = 1 / (1 + c["eta"])
        for i in range(10):
            mix = lam * xt[i] + (1 - lam) * xt[j[i]]
            torch.testing.assert_close(aug.x[k, i], mix / mix.norm(), atol=1e-6, rtol=1e-5)
    assert aug.targets.slots == 1 and torch.equal(aug.targets.index[:, 0], torch.as_tensor(y))  # hard labels
