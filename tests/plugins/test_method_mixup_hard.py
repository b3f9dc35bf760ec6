"""Core-tuning's mixup_hard augmenter and focal_con loss (Core-tuning, Zhang et al., NeurIPS 2021, §4.2-4.4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from method_utils import (
    SmoothedHinge,
    assert_stack_equals_singles,
    batch_of,
    configs_for,
    make_run,
    random_heads,
    train,
    unit_blobs,
)

from featbench.api import AugRNG, Targets
from featbench.plugins.baseline import NoAugmentation
from featbench.plugins.core_tuning import (
    FocalContrastive,
    MixupHard,
    focal_supcon,
    hard_pairs,
    majority_labels,
    negative_partners,
    official_hard_pairs,
)
from featbench.plugins.draws import beta
from featbench.plugins.losses import smoothed_hinge_rows
from featbench.training.trainer import head_gradients


def test_negative_partners_have_another_class_and_are_uniform():
    y = torch.tensor([0, 0, 1, 1, 2])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5, 5)
    for _ in range(3000):
        counts[torch.arange(5), negative_partners(g, y)] += 1
    assert torch.all(counts[y[:, None] == y[None, :]] == 0)
    freq = counts / 3000
    torch.testing.assert_close(freq[0, 2:], torch.full((3,), 1 / 3), atol=0.04, rtol=0)
    torch.testing.assert_close(freq[4, :4], torch.full((4,), 1 / 4), atol=0.04, rtol=0)
    one_class = negative_partners(g, torch.zeros(4, dtype=torch.long))  # fallback: any other row
    assert torch.all(one_class != torch.arange(4))


def test_hard_pairs_follow_the_paper():
    x, y = unit_blobs(n=14, d=8, C=3, seed=1)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    cos = (xt @ xt.T).unsqueeze(0)
    hp, hn = hard_pairs(cos, yt)
    for i in range(14):
        pos = [j for j in range(14) if j != i and yt[j] == yt[i]]
        neg = [j for j in range(14) if yt[j] != yt[i]]
        assert int(hp[0, i]) == min(pos, key=lambda j: float(cos[0, i, j]))
        assert int(hn[0, i]) == max(neg, key=lambda j: float(cos[0, i, j]))


def test_official_selection_never_finds_a_true_positive_on_non_negative_features():
    x, y = unit_blobs(n=16, d=8, C=4, seed=2)  # non-negative features: every cosine >= 0
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    hp, _ = official_hard_pairs((xt @ xt.T).unsqueeze(0), yt)
    true_positive = (yt[hp[0]] == yt) & (hp[0] != torch.arange(16))
    assert int(true_positive.sum()) == 0  # the paper intends 16 / 16


def augment(configs, x, y, seed=4):
    run = make_run(MixupHard, configs, x, y, 3, seed=seed)
    return run, MixupHard(run).augment(batch_of(x, y, random_heads(len(configs), 3, x.shape[1])))


def test_mixed_rows_lie_on_their_segments_with_clipped_weights():
    x, y = unit_blobs(n=12, d=8, C=3, seed=3)
    configs = configs_for(MixupHard, None, {"alpha": 1.0, "lam_n": 0.8, "lam_p": 0.8}, {"alpha": 0.3, "lam_n": 0.6, "lam_p": 0.0})
    run, aug = augment(configs, x, y)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    twin = AugRNG(run.rng.seed, 2)
    partner = negative_partners(twin.shared, yt)
    hp, hn = hard_pairs((xt @ xt.T).unsqueeze(0), yt)
    assert aug.x.shape == (2, 36, 8)
    torch.testing.assert_close(aug.targets.dense_probs(3).sum(-1), torch.ones(2, 36))
    for k, c in enumerate(configs):
        lam = torch.clamp(beta(twin.for_head(k), c["alpha"], (12,)), min=c["lam_n"])
        mu = torch.clamp(beta(twin.for_head(k), c["alpha"], (12,)), min=c["lam_p"])
        assert torch.all(aug.targets.weight[k, 12:24, 0] >= c["lam_n"] - 1e-7)
        torch.testing.assert_close(aug.x[k, :12], xt)
        torch.testing.assert_close(aug.x[k, 12:24], (1 - lam)[:, None] * xt + lam[:, None] * xt[partner])
        torch.testing.assert_close(aug.x[k, 24:], mu[:, None] * xt[hp[0]] + (1 - mu)[:, None] * xt[hn[0]])
        assert torch.equal(aug.targets.index[k, 12:24, 0], yt[partner]) and torch.equal(aug.targets.index[k, 24:, 0], yt[hp[0]])
    torch.testing.assert_close(aug.row_weight, torch.cat([torch.full((24,), 1 / 12), torch.zeros(12)]))


def test_huge_alpha_puts_every_negative_at_exactly_lam_n():
    x, y = unit_blobs(n=12, d=8, C=3, seed=3)
    _, aug = augment(configs_for(MixupHard, None, {"alpha": 1e6}), x, y)
    assert torch.all(aug.targets.weight[0, 12:24, 0] == torch.tensor(0.8))


def test_official_rows_and_renormalisation_options():
    x, y = unit_blobs(n=12, d=8, C=3, seed=3)
    _, aug = augment(configs_for(MixupHard, None, {"ce_rows": "all", "renormalize": "true", "partner": "shuffle"}), x, y)
    assert aug.row_weight is None  # mean over all 3b rows
    torch.testing.assert_close(aug.x.norm(dim=-1), torch.ones(1, 36))


def test_majority_labels():
    t = Targets.pair(torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0]), torch.tensor([0.9, 0.2, 0.5]))
    assert majority_labels(t).tolist() == [0, 2, 2]
    assert majority_labels(Targets.hard(torch.tensor([3, 1]))).tolist() == [3, 1]


def supcon_reference(v, labels, tau, focal, normalization="paper"):
    """The focal supervised contrastive loss written out anchor by anchor (Core-tuning, Zhang et al., NeurIPS 2021, §4.2-4.4)."""
    r = v.shape[0]
    total, anchors = 0.0, 0
    for i in range(r):
        denom = sum(math.exp(float(v[i] @ v[k]) / tau) for k in range(r) if k != i)
        pos = [j for j in range(r) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        terms = []
        for j in pos:
            p = math.exp(float(v[i] @ v[j]) / tau) / denom
            terms.append(-(1 - p if focal else 1.0) * math.log(p))
        total += sum(terms) / (len(pos) if normalization == "paper" else r)
        anchors += 1
    return total / anchors if anchors else 0.0


@pytest.mark.parametrize("focal,normalization", [(False, "paper"), (True, "paper"), (True, "official")])
def test_focal_supcon_equals_the_written_out_loss(focal, normalization):
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(1, 10, 4, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0, 4])
    got = focal_supcon(v, labels, torch.tensor([0.5]), normalization, focal=focal)
    assert got.shape == (1,)
    assert abs(float(got[0]) - supcon_reference(v[0], labels.tolist(), 0.5, focal, normalization)) < 1e-9


def test_a_contrastive_loss_on_a_separate_head_cannot_move_the_classifier():
    # Core-tuning, Zhang et al., NeurIPS 2021, §4.2-4.4: Core-tuning's MLP head on frozen features -> d L_con / d W = 0 exactly.
    x, y = unit_blobs(n=12, d=8, C=3, seed=5)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = random_heads(1, 3, 8).requires_grad_(True)
    head = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    separate = focal_supcon(F.normalize(head(xt), dim=-1).unsqueeze(0), yt, torch.tensor([0.07]))
    assert torch.autograd.grad(separate.sum(), w, allow_unused=True)[0] is None
    on_logits = focal_supcon(F.normalize(xt @ w[0].T, dim=-1).unsqueeze(0), yt, torch.tensor([0.07]))
    assert float(torch.autograd.grad(on_logits.sum(), w)[0].abs().max()) > 0


def test_focal_con_gradient_equals_autograd_of_the_total_loss():
    x, y = unit_blobs(n=12, d=8, C=3, seed=6)
    configs = configs_for(MixupHard, FocalContrastive, {"eta_c": 0.5, "tau": 0.1, "lamda": 0.2}, {"eta_c": 2.0, "tau": 0.5, "lamda": 1.0})
    run = make_run(MixupHard, configs, x, y, 3, loss=FocalContrastive())
    w = random_heads(2, 3, 8, seed=7)
    aug = MixupHard(run).augment(batch_of(x, y, w))
    got = head_gradients(aug, w, run.loss)
    for k, c in enumerate(configs):
        wk = w[k].clone().requires_grad_(True)
        z = aug.x[k] @ wk.T
        lam, dlt = (torch.tensor([c[n]]) for n in ("lamda", "delta"))
        rows = smoothed_hinge_rows(z.unsqueeze(0), aug.targets.index[k:k + 1], aug.targets.weight[k:k + 1], lam, dlt)[0]
        labels = aug.targets.index[k].gather(-1, aug.targets.weight[k].argmax(-1, keepdim=True)).squeeze(-1)
        con = focal_supcon(F.normalize(z, dim=-1).unsqueeze(0), labels, torch.tensor([c["tau"]]))[0]
        total = (rows * aug.row_weight).sum() + c["eta_c"] * con
        (want,) = torch.autograd.grad(total, wk)
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-4)


def test_focal_con_with_zero_weight_is_the_smoothed_hinge_exactly():
    x, y = unit_blobs(n=70, d=12, C=3)
    cfg = configs_for(MixupHard, FocalContrastive, {"eta_c": 0.0}, lr=1.0)[0]
    a = train(MixupHard, [cfg], x, y, 3, loss=FocalContrastive())
    hinge_cfg = {k: v for k, v in cfg.items() if k not in ("eta_c", "tau", "normalization")}
    b = train(MixupHard, [hinge_cfg], x, y, 3, loss=SmoothedHinge())
    assert torch.equal(a, b)
    none_cfg = {k: v for k, v in cfg.items() if k in ("lr", "wd", *(h.name for h in FocalContrastive.hparams))}
    c = train(NoAugmentation, [none_cfg], x, y, 3, loss=FocalContrastive())
    assert torch.equal(c, train(NoAugmentation, [{k: hinge_cfg[k] for k in ("lr", "wd", "lamda", "delta")}], x, y, 3))


def test_focal_con_changes_training_when_switched_on():
    x, y = unit_blobs(n=70, d=12, C=3)
    cfg = configs_for(NoAugmentation, FocalContrastive, {"eta_c": 1.0}, lr=1.0)
    hinge = train(NoAugmentation, [{k: cfg[0][k] for k in ("lr", "wd", "lamda", "delta")}], x, y, 3)
    assert float((train(NoAugmentation, cfg, x, y, 3, loss=FocalContrastive()) - hinge).abs().max()) > 1e-3


def test_stack_equals_single_runs_with_focal_con():
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(MixupHard, FocalContrastive, {"alpha": 0.5, "eta_c": 0.0}, {"alpha": 2.0, "lam_p": 0.0, "eta_c": 1.0},
                          {"alpha": 1.0, "tau": 0.2, "eta_c": 0.3, "lr": 0.5})
    assert_stack_equals_singles(MixupHard, configs, x, y, 3, loss=FocalContrastive())
