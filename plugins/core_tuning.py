"""Core-tuning's feature mixup with hard pairs (``mixup_hard``) and its focal contrastive loss
(``focal_con``) for a linear head on fixed features (Zhang et al., NeurIPS 2021, §4.2-4.4).

``mixup_hard`` (per step, on the clean batch X, y; every output is a constant):

* hard negatives X-: partner n(i) uniform among the batch rows of another class (``partner=negative``;
  fallback: any other row) or a random shuffle (``partner=shuffle``, official, may pair i with itself);
  ``lam_i ~ Beta(alpha, alpha)`` clipped to ``>= lam_n``; ``x-_i = (1 - lam) x_i + lam x_n(i)`` with target
  ``lam e_y_n(i) + (1 - lam) e_y_i``.
* hard positives X+: ``hp(i)`` = the same-class row least similar to x_i (fallback: i), ``hn(i)`` = the
  other-class row most similar to x_i (fallback: the most similar other row) (``hard_pairs=paper``);
  ``hard_pairs=official`` reproduces the official code, whose argmin over ``cos * positive_mask`` never
  finds a true positive when all cosines are >= 0. ``mu_i ~ Beta(alpha, alpha)`` clipped to ``>= lam_p``
  (``lam_p = 0`` is the official, unclipped draw); ``x+_i = mu x_hp(i) + (1 - mu) x_hn(i)``, target
  ``mu e_y_hp(i) + (1 - mu) e_y_hn(i)``.
* it returns the rows [X; X-; X+]. ``ce_rows=paper`` (default) weights the loss rows as
  ``mean over X + mean over X-`` (X+ gets weight 0: it only enters the contrastive term);
  ``ce_rows=all`` (official) averages over all 3b rows.
* ``renormalize`` (JUDGMENT, adapting Core-tuning's §4.2-4.4; default false = faithful) applies normalize() to
  the mixed rows.

Beta draws depend on alpha and come from each head's own stream; the partner draw comes from the shared
stream.

``focal_con``: the smoothed hinge on the weighted rows plus ``eta_c`` times the focal supervised
contrastive loss over *all* rows of the batch, ``-mean_i 1/|P_i| sum_{j in P_i} (1 - p_ij) log p_ij`` with
``p_ij = softmax_{k != i}(v_i . v_k / tau)``, the focal weight not detached, and the mean over anchors with
at least one positive (``normalization=official`` divides each anchor's sum by the number of rows instead).
A row's class for the contrastive term is its majority label (its heaviest target slot): with the paper's
clipping this gives ``x+_i`` the class of x_i (a hard positive of anchor i) and ``x-_i`` the class of its
partner (a hard negative), as Core-tuning's §4.2-4.4 assigns them.

JUDGMENT (the crucial adaptation of Core-tuning's §4.2-4.4 to a linear head): the embeddings are the normalised
logits, ``v = normalize(x W^T)``. Core-tuning applies the contrastive loss to a separate MLP head on the features;
with frozen features that head's loss does not depend on W at all (its gradient w.r.t. W is exactly zero,
shown in the tests), so Core-tuning would degenerate to mixup-hard cross-entropy. Using the normalised
logits is the only choice that keeps the classifier a linear head and lets the term regularise W.
"""

from __future__ import annotations

from featbench.api import (
    FLAG_CHOICES,
    Augmented,
    Batch,
    FeatureAugmenter,
    HParam,
    Targets,
    hookimpl,
    hp_column,
    normalize_rows,
    per_head,
)
from featbench.plugins.draws import beta_per_head, permutation
from featbench.plugins.losses import SmoothedHinge

# --------------------------------------------------------------------------------------------------
# mixup_hard: pure functions


def negative_partners(gen, y, mode: str = "negative"):
    """Partner n(i) of every row: uniform among rows of another class (fallback: among the other rows) for
    ``mode='negative'``; a random permutation for ``mode='shuffle'``. Shape (b,), int64, on y's device."""
    import torch

    b = y.shape[0]
    if mode == "shuffle":
        return permutation(gen, b).to(y.device)
    u = torch.rand(b, generator=gen).to(y.device)
    different = y[:, None] != y[None, :]
    others = ~torch.eye(b, dtype=torch.bool, device=y.device)
    cand = torch.where(different.any(1, keepdim=True), different, others)
    count = cand.sum(1)
    rank = (u * count).floor().long().clamp(max=count - 1)
    return ((cand.long().cumsum(1) == (rank + 1)[:, None]) & cand).long().argmax(1)


def hard_pairs(cos, y):
    """Paper semantics: ``hp(i) = argmin_{j != i, y_j = y_i} cos_ij`` (fallback i) and
    ``hn(i) = argmax_{y_j != y_i} cos_ij`` (fallback argmax over j != i). ``cos`` (b, b) or (K, b, b);
    results (b,) or (K, b)."""
    import torch

    b = y.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=y.device)
    same = y[:, None] == y[None, :]
    pos, neg = same & ~eye, ~same
    self_idx = torch.arange(b, device=y.device)
    hp = torch.where(pos.any(1), cos.masked_fill(~pos, float("inf")).argmin(-1), self_idx)
    hn = torch.where(
        neg.any(1), cos.masked_fill(~neg, float("-inf")).argmax(-1), cos.masked_fill(eye, float("-inf")).argmax(-1)
    )
    return hp, hn


def official_hard_pairs(cos, y):
    """The official code's selection (Core-tuning.py ``feature_mixup``), bug included: ``hn`` is the argmax
    of ``cos * negative_mask``; ``hp`` the argmin of ``cos * positive_mask`` (zeros off the positives, so with
    non-negative cosines it lands on self or a negative), with index 0 then replaced by i."""
    import torch

    b = y.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=y.device)
    same = y[:, None] == y[None, :]
    hn = (cos * (~same).to(cos.dtype)).argmax(-1)
    hp = (cos * (same & ~eye).to(cos.dtype)).argmin(-1)
    self_idx = torch.arange(b, device=y.device).expand_as(hp)
    return torch.where(hp == 0, self_idx, hp), hn


def mix_pairs(x, a, b, lam):
    """``lam x[a] + (1 - lam) x[b]`` per head; ``x`` (K, n, d), ``a``, ``b`` (n,) or (K, n), ``lam`` (K, n)."""
    K, _, d = x.shape

    def rows(idx):
        return x.gather(1, idx.expand(K, -1).unsqueeze(-1).expand(-1, -1, d))

    lam = lam.to(x.dtype).unsqueeze(-1)
    return lam * rows(a) + (1 - lam) * rows(b)


class MixupHard(FeatureAugmenter):
    """Core-tuning's mixup-hard: add hard-negative and hard-positive feature mixes to the batch."""

    hparams = (
        HParam(
            "alpha", 1.0, "Beta(alpha, alpha) parameter of the mixing weights, > 0 (official 1)", low=0.0, low_open=True
        ),
        HParam("lam_n", 0.8, "lower clip of the hard-negative weight on the partner, in [0, 1]", low=0.0, high=1.0),
        HParam(
            "lam_p",
            0.8,
            "lower clip of the hard-positive weight, in [0, 1] (0 = official, unclipped)",
            low=0.0,
            high=1.0,
        ),
        HParam(
            "partner",
            "negative",
            "hard-negative partner: another class (negative) or a shuffle (shuffle, official)",
            choices=("negative", "shuffle"),
        ),
        HParam(
            "hard_pairs",
            "paper",
            "hard positive/negative selection: paper or official (with its bug)",
            choices=("paper", "official"),
        ),
        HParam(
            "ce_rows",
            "paper",
            "loss rows: mean over X + mean over X- (paper) or mean over all 3b rows (all)",
            choices=("paper", "all"),
        ),
        HParam("renormalize", "false", "normalise the mixed rows onto the unit sphere", choices=FLAG_CHOICES),
    )
    min_batch = 2

    def augment(self, batch: Batch) -> Augmented:
        import torch

        run, opts = self.run, self.run.options
        y, K, b = batch.y, self.run.num_heads, batch.y.shape[0]
        x = per_head(batch.x, K)
        partner = negative_partners(run.rng.shared, y, opts["partner"])
        lam = torch.maximum(
            beta_per_head(run.rng, run.hp["alpha"], (b,), x.device), hp_column(run.hp["lam_n"], x)[..., 0]
        )
        mu = torch.maximum(
            beta_per_head(run.rng, run.hp["alpha"], (b,), x.device), hp_column(run.hp["lam_p"], x)[..., 0]
        )
        xn = normalize_rows(batch.x)  # shared rows: one (b, b) cosine matrix for all heads
        pick = official_hard_pairs if opts["hard_pairs"] == "official" else hard_pairs
        pos, neg = pick(xn @ xn.transpose(-1, -2), y)
        x_neg = mix_pairs(x, partner, torch.arange(b, device=y.device), lam)
        x_pos = mix_pairs(x, pos, neg, mu)
        if opts["renormalize"] == "true":
            x_neg, x_pos = normalize_rows(x_neg), normalize_rows(x_pos)
        parts = [
            Targets.pair(y, y, torch.ones_like(lam)),
            Targets.pair(y[partner], y, lam),
            Targets.pair(y[pos], y[neg], mu),
        ]
        targets = Targets(torch.cat([t.index for t in parts], 1), torch.cat([t.weight for t in parts], 1))
        row_weight = None
        if opts["ce_rows"] == "paper":
            row_weight = torch.cat([torch.full((2 * b,), 1.0 / b), torch.zeros(b)]).to(x.device, x.dtype)
        return Augmented(torch.cat([x, x_neg, x_pos], 1), targets, row_weight=row_weight)


# --------------------------------------------------------------------------------------------------
# focal_con: pure functions


def majority_labels(targets: Targets):
    """Each row's heaviest target slot (first on ties): (r,) or (K, r)."""
    if targets.weight is None:
        return targets.index[..., 0]
    return targets.index.gather(-1, targets.weight.argmax(-1, keepdim=True)).squeeze(-1)


def focal_supcon(v, labels, tau, normalization: str = "paper", focal: bool = True):
    """Focal supervised contrastive loss per head, (K,).

    ``v`` (K, r, e) unit rows; ``labels`` (r,) or (K, r); ``tau`` (K,). Denominators over all k != i;
    positives ``P_i = {j != i: labels_j = labels_i}``; term ``-(1 - p_ij) log p_ij`` (weight not detached;
    ``focal=False`` drops it, giving SupCon). ``paper``: mean over P_i, then mean over anchors with a
    positive; ``official``: sum over P_i divided by r, then the same mean. 0 when no anchor has a positive.
    """
    import torch

    K, r, _ = v.shape
    if r < 2:  # no pairs at all
        return v.new_zeros(K)
    eye = torch.eye(r, dtype=torch.bool, device=v.device)
    sim = (v @ v.transpose(1, 2)) / hp_column(tau, v)
    masked = sim.masked_fill(eye, float("-inf"))
    log_p = (masked - torch.logsumexp(masked, -1, keepdim=True)).masked_fill(eye, 0.0)
    pos = (labels[..., :, None] == labels[..., None, :]) & ~eye
    pos = pos.expand(K, r, r)
    term = -log_p * (1 - log_p.exp()) if focal else -log_p
    per_anchor = (term * pos.to(term.dtype)).sum(-1)
    n_pos = pos.sum(-1)
    per_anchor = per_anchor / (n_pos.clamp(min=1) if normalization == "paper" else r)
    anchors = (n_pos > 0).sum(-1)
    return per_anchor.sum(-1) / anchors.clamp(min=1)


class FocalContrastive(SmoothedHinge):
    """Smoothed hinge plus eta_c x the focal supervised contrastive loss on the normalised logits."""

    hparams = (
        *SmoothedHinge.hparams,
        HParam("eta_c", 0.1, "weight of the focal contrastive term, >= 0 (0 = the smoothed hinge)", low=0.0),
        HParam("tau", 0.07, "temperature of the contrastive term, > 0", low=0.0, low_open=True),
        HParam(
            "normalization",
            "paper",
            "per-anchor mean over positives (paper) or over all rows (official)",
            choices=("paper", "official"),
        ),
    )

    def batch_term(self, logits, targets: Targets, hp):
        if not bool((hp["eta_c"] > 0).any()):
            return None
        con = focal_supcon(normalize_rows(logits), majority_labels(targets), hp["tau"], hp["normalization"])
        return hp["eta_c"].to(con.dtype) * con


@hookimpl
def register_augmenters(registry):
    registry.add("mixup_hard", MixupHard)


@hookimpl
def register_losses(registry):
    registry.add("focal_con", FocalContrastive)
