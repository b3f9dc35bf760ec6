"""SeA: semantic adversarial augmentation of last-layer features (Qian, Xu, Hu, ECCV 2024).

One step, exactly as the official code (SeA paper §3.1, Alg. 1, Eqs. 4-11): ``G = (P - Y) W`` at the
current heads with the training loss' own lamda and delta; ``U = normalize(G)``;
``q_i = softmax_{j != i}(<u_i, x_j> / alpha)``;
``D = normalize(Q X)``; ``X~ = normalize(X + eta D)``; train on ``X~`` (replacing ``X``) with the original
hard labels. Everything is a constant for the weight update.

The direction helpers it is built from (``feature_gradients``, ``sea_augment``, ...) live in the plugin API's
neutral module (:mod:`featbench.directions`, imported from :mod:`featbench.api`), shared with the other
in-batch direction methods; the fused step below proves equal to them (tests/training/test_fast_identities.py).
"""

from __future__ import annotations

from featbench.api import (
    STEP_SIZE,
    Augmented,
    Batch,
    FeatureAugmenter,
    HParam,
    LinearGrad,
    Targets,
    batch_gram,
    clamp_norm,
    feature_gradients,
    gradient_similarities,
    gradient_sq_norms,
    hookimpl,
    hp_column,
    masked_softmax_weights,
    per_row_loss,
    push_mix,
    row_mix_logits,
    row_weights,
    sea_augment,
    select_heads,
    stacked_logits,
)


def sea_fused_gradients(x, y, weight, loss, alpha, eta, active=None):
    """Weight gradient (as a ``LinearGrad``) of every head's mean loss on its SeA-augmented batch, fused.

    Equals ``head_gradients(Augmented(sea_augment(x, feature_gradients(...), alpha, eta), hard(y)))``
    (tested) but never forms the (K, b, d) tensors ``G``, ``Q X`` or ``X~`` (featbench.directions):
    ``<g_i, x_j> = [E Z^T]_ij``, ``||g_i||^2 = [E W W^T E^T]_ii``, ``X~ = M X`` with ``M`` from ``Q`` and the
    shared Gram matrix ``X X^T``, logits ``M Z``, gradient ``(M^T E~)^T X``. ``x`` (b, d) is shared.
    Per head: 4bdC + 2C^2 d + 2b^3 + 6b^2 C flops, against 8bdC + 4b^2 d for the direct step.

    ``active`` (optional, int64 indices of the heads with ``eta != 0``) restricts the augmentation work to
    those heads; the others train on the clean rows as the baseline does. Without it every head is
    computed and ``eta = 0`` heads are selected back to their clean logits on the device.
    """
    import torch

    targets = Targets.hard(y)
    z = stacked_logits(x, weight)  # (K, b, C), shared by the gradient pass and the training pass
    e = loss.grad_logits(z, targets)  # rows of G = e W; also the clean rows' logit gradient
    if active is None:
        keep = hp_column(eta, z) == 0  # eta = 0 heads train on the clean rows, bit for bit
        mix = _sea_mix(x, z, e, weight, alpha, eta)
        dz = row_weights(loss.grad_logits(torch.where(keep, z, row_mix_logits(mix, z)), targets), None)
        return LinearGrad(torch.where(keep, dz, mix.transpose(1, 2) @ dz), x)
    dz = row_weights(e, None)
    if active.numel():
        za = z.index_select(0, active)
        mix = _sea_mix(
            x,
            za,
            e.index_select(0, active),
            weight.index_select(0, active),
            alpha.index_select(0, active),
            eta.index_select(0, active),
            batch_gram(x),
        )
        dza = row_weights(select_heads(loss, active).grad_logits(row_mix_logits(mix, za), targets), None)
        dz = dz.index_copy(0, active, mix.transpose(1, 2) @ dza)
    return LinearGrad(dz, x)


def _sea_mix(x, z, e, weight, alpha, eta, gram=None):
    """SeA's row mix ``M`` (X~ = M X) from the logits ``z`` and their gradient ``e`` (featbench.directions)."""
    scores = gradient_similarities(e, z).div_(clamp_norm(gradient_sq_norms(e, weight)).unsqueeze(-1))
    return push_mix(masked_softmax_weights(scores, alpha), batch_gram(x) if gram is None else gram, eta)


class SeA(FeatureAugmenter):
    """SeA: push each feature towards the adversarial direction projected onto the other batch features."""

    hparams = (
        STEP_SIZE,
        HParam("alpha", 0.01, "entropy weight / softmax temperature of the projection, >= 0 (0 = one-hot)", low=0.0),
    )
    off = {"eta": 0.0}
    min_batch = 2  # the direction uses the *other* examples of the batch
    cuda_graph_safe = True  # deterministic, no host reads (FeatureAugmenter.cuda_graph_safe)

    def augment(self, batch: Batch) -> Augmented:
        grad = feature_gradients(batch, self.run.loss, self.run.num_heads)
        x_aug = sea_augment(batch.x, grad, self.run.hp["alpha"], self.run.hp["eta"])
        return Augmented(x_aug, Targets.hard(batch.y))

    def __init__(self, run):
        super().__init__(run)
        import torch

        active = torch.nonzero(run.hp["eta"] != 0).flatten()  # read once per run, never in the epoch loop
        self._active = None if active.numel() == run.num_heads else active

    def fused_gradients(self, batch: Batch):
        """The fused step (:func:`sea_fused_gradients`) for shared rows and a loss of the logits alone."""
        if batch.x.dim() != 2 or not per_row_loss(self.run.loss):
            return None
        return sea_fused_gradients(
            batch.x, batch.y, batch.weight, self.run.loss, self.run.hp["alpha"], self.run.hp["eta"], self._active
        )


@hookimpl
def register_augmenters(registry):
    registry.add("sea", SeA)
