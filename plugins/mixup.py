"""Mixup: faithful manifold mixup applied to the last-layer features (Verma et al., ICML 2019).

Per mini-batch: ``lam ~ Beta(alpha, alpha)`` (one scalar per head, from that head's stream), a random
permutation pi of the batch (self-pairs allowed, shared stream), ``X~ = lam X + (1 - lam) X[pi]`` with the
target pair ``lam e_y + (1 - lam) e_y[pi]``; the mixed batch replaces the clean one. The loss of a row is
``lam l(z, y) + (1 - lam) l(z, y[pi])`` with the run's loss (soft-label cross-entropy for the smoothed
hinge with lamda = 1, delta = 0).

Options: ``renormalize`` (JUDGMENT, Verma et al., ICML 2019; default false = faithful: a mix of two unit
vectors has norm between ~0.7 and 1, which softens the logits; true applies normalize() as SeA does to its
augmentations); ``lam_per_example`` (default false = one lam per batch, as the official code;
true draws one per row); ``mix_loss=bce_softmax`` reproduces the official quirk, binary cross-entropy between
the softmax outputs and the soft target averaged over the C entries, instead of the run's loss.
The official manifold-mixup alpha is 2.0 for hidden layers on CIFAR.
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
    normalize_rows,
    per_head,
)
from featbench.plugins.draws import beta_per_head, permutation


def mix_rows(x, partner, lam):
    """``lam x + (1 - lam) x[partner]`` per head: ``x`` (b, d) or (K, b, d), ``partner`` (b,) indices,
    ``lam`` (K, 1) or (K, b); result (K, b, d)."""
    xk = per_head(x, lam.shape[0])
    lam = lam.to(xk.dtype).unsqueeze(-1)
    return lam * xk + (1 - lam) * xk[:, partner]


def bce_softmax_rows(logits, targets: Targets):
    """The official manifold-mixup loss per row: mean over classes of BCE(softmax(z), t); (K, r)."""
    import torch

    K, r, C = logits.shape
    t = targets.dense_probs(C).expand(K, r, C).to(logits.dtype)
    return torch.nn.functional.binary_cross_entropy(torch.softmax(logits, -1), t, reduction="none").mean(-1)


class Mixup(FeatureAugmenter):
    """Mixup: train on convex mixes of pairs of features with the mixed (two-label) targets."""

    hparams = (
        HParam(
            "alpha",
            2.0,
            "Beta(alpha, alpha) parameter of the mixing weight, > 0 (official 2.0)",
            low=0.0,
            low_open=True,
        ),
        HParam(
            "renormalize",
            "false",
            "normalise the mixed features onto the unit sphere (false: faithful)",
            choices=FLAG_CHOICES,
        ),
        HParam(
            "lam_per_example", "false", "one mixing weight per example instead of one per batch", choices=FLAG_CHOICES
        ),
        HParam(
            "mix_loss",
            "run",
            "the run's loss on the two labels (run) or the official BCE on softmax (bce_softmax)",
            choices=("run", "bce_softmax"),
        ),
    )
    min_batch = 2

    def augment(self, batch: Batch) -> Augmented:
        b = batch.y.shape[0]
        opts = self.run.options
        perm = permutation(self.run.rng.shared, b).to(batch.y.device)
        lam = beta_per_head(
            self.run.rng, self.run.hp["alpha"], (b,) if opts["lam_per_example"] == "true" else (1,), batch.x.device
        )
        x_mix = mix_rows(batch.x, perm, lam)
        if opts["renormalize"] == "true":
            x_mix = normalize_rows(x_mix)
        targets = Targets.pair(batch.y, batch.y[perm], lam)
        row_loss = (lambda z: bce_softmax_rows(z, targets)) if opts["mix_loss"] == "bce_softmax" else None
        return Augmented(x_mix, targets, row_loss=row_loss)


@hookimpl
def register_augmenters(registry):
    registry.add("mixup", Mixup)
