"""Adv: the plain adversarial direction, without SeA's projection (SeA paper Eq. 5, §4.1).

Default step: ``G = (P - Y) W`` at the current heads with the training loss' own lamda and delta (as in
SeA), ``X~ = normalize(X + eta normalize(G))``, hard labels, replacement, X~ a constant.

JUDGMENT (SeA paper Eq. 5, §4.1): ``normalize_grad=true`` (default) normalises the gradient, as SeA's code
does before projecting, and re-normalises the result, as the paper does for every augmented example;
``normalize_grad=false`` is the literal Eq. 5, ``x + eta * grad`` with the raw per-example gradient
``W^T (p - e_y)`` and no re-normalisation. The paper searches eta in {0.005, 0.01, 0.02, 0.05}: a unit
step along the exact gradient raises the loss at the maximal rate, so Adv needs a much smaller eta.
"""

from __future__ import annotations

from featbench.api import (
    FLAG_CHOICES,
    Augmented,
    Batch,
    FeatureAugmenter,
    HParam,
    Targets,
    feature_gradients,
    hookimpl,
    hp_column,
    normalize_rows,
    per_head,
    push_along,
)


def adversarial_step(x, grad, eta, normalize: bool = True):
    """``normalize(x + eta normalize(grad))`` or, with ``normalize=False``, ``x + eta grad``; per head,
    heads with eta = 0 keep ``x`` bit for bit. ``grad`` is (K, b, d)."""
    import torch

    if normalize:
        return push_along(x, normalize_rows(grad), eta)
    xk = per_head(x, grad.shape[0])
    e = hp_column(eta, grad)
    return torch.where(e == 0, xk, xk + e * grad)


class Adv(FeatureAugmenter):
    """Adv: push each feature along its own loss gradient (no projection onto the batch)."""

    hparams = (
        HParam("eta", 0.01, "augmentation step size, >= 0 (0 = baseline; the paper searches 0.005-0.05)", low=0.0),
        HParam("normalize_grad", "true", "normalise the gradient and the result (true) or use raw Eq. 5 (false)",
               choices=FLAG_CHOICES),
    )
    off = {"eta": 0.0}

    def augment(self, batch: Batch) -> Augmented:
        grad = feature_gradients(batch, self.run.loss, self.run.num_heads)
        x_aug = adversarial_step(batch.x, grad, self.run.hp["eta"], self.run.options["normalize_grad"] == "true")
        return Augmented(x_aug, Targets.hard(batch.y))


@hookimpl
def register_augmenters(registry):
    registry.add("adv", Adv)
