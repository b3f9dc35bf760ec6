"""SeA: semantic adversarial augmentation of last-layer features (Qian, Xu, Hu, ECCV 2024).

One step, exactly as the official code (methods.md 4.1): ``G = (P - Y) W`` at the current heads with the
training loss' own lamda and delta; ``U = normalize(G)``; ``q_i = softmax_{j != i}(<u_i, x_j> / alpha)``;
``D = normalize(Q X)``; ``X~ = normalize(X + eta D)``; train on ``X~`` (replacing ``X``) with the original
hard labels. Everything is a constant for the weight update.

The helpers below are pure tensor functions, vectorised over K heads; other in-batch direction methods
(SeA_Neg, Rand, mixdir) reuse them.
"""

from __future__ import annotations

from featbench import hookimpl
from featbench.api import Augmented, Batch, FeatureAugmenter, HParam, Targets, hp_column, per_head


def normalize_rows(v):
    """``v / max(||v||, 1e-12)`` along the last dimension (``F.normalize``)."""
    import torch

    return torch.nn.functional.normalize(v, dim=-1, eps=1e-12)


def masked_softmax_weights(scores, alpha):
    """Projection weights ``q_i = softmax_{j != i}(scores_ij / alpha)`` (K, b, b), diagonal exactly 0.

    ``alpha = 0`` (per head) gives the one-hot ``argmax_{j != i}`` (SeA App. B.2). The diagonal is masked
    with -inf before the softmax (the official softmax-zero-renormalise route can produce 0/0), and weights
    below ``1e-25`` of the row's largest are exactly 0 (``softmax_without_subnormals``: equal to rounding,
    and no subnormal floats to slow the CPU down). No host synchronisation on accelerators.
    """
    import torch

    from featbench.training.fastpath import softmax_without_subnormals

    a = hp_column(alpha, scores)
    safe_a = torch.where(a > 0, a, torch.ones_like(a))
    scaled = scores / safe_a
    scaled.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))  # the mask touches the K*b diagonal entries only
    soft = softmax_without_subnormals(scaled)
    # Reading alpha on the host is free on the CPU; on an accelerator it would stall the queue every
    # step, so there both branches are computed and selected on the device.
    if scores.device.type == "cpu" and bool((a > 0).all()):
        return soft
    masked = scores.clone()
    masked.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
    hard_idx = masked.argmax(-1, keepdim=True)
    hard = torch.zeros_like(scores).scatter_(-1, hard_idx, 1.0)  # one-hot without one_hot's range check (a sync)
    return torch.where(a > 0, soft, hard)


def push_along(x, direction, eta):
    """``normalize(x + eta * direction)`` per head; heads with eta = 0 keep ``x`` bit for bit."""
    import torch

    x = per_head(x, direction.shape[0])
    e = hp_column(eta, direction)
    return torch.where(e == 0, x, normalize_rows(x + e * direction))


def span_direction(q, x):
    """``normalize(Q X)``: the unit direction of a convex combination of batch rows; (K, b, d)."""
    return normalize_rows(q @ x)


def feature_gradients(batch: Batch, loss, num_heads: int):
    """Per-example loss gradient w.r.t. the features at the current heads: ``(dL/dz) W``, (K, b, d)."""
    logits = batch.x @ batch.weight.transpose(1, 2)  # (K, b, C)
    return loss.grad_logits(logits, Targets.hard(batch.y)) @ batch.weight


def sea_augment(x, grad, alpha, eta):
    """The SeA augmentation from clean rows ``x`` and feature gradients ``grad`` (K, b, d)."""
    xk = per_head(x, grad.shape[0])
    scores = normalize_rows(grad) @ xk.transpose(1, 2)  # cosine of u_i with every x_j
    q = masked_softmax_weights(scores, alpha)
    return push_along(x, span_direction(q, xk), eta)


#: The step size of the in-batch direction methods (SeA, SeA_Neg, Rand, mixdir); 0 is the baseline.
STEP_SIZE = HParam("eta", 0.8, "augmentation step size, >= 0 (0 = baseline)", low=0.0)


def sea_fused_gradients(x, y, weight, loss, alpha, eta, active=None):
    """Weight gradient (as a ``LinearGrad``) of every head's mean loss on its SeA-augmented batch, fused.

    Equals ``head_gradients(Augmented(sea_augment(x, feature_gradients(...), alpha, eta), hard(y)))``
    (tested) but never forms the (K, b, d) tensors ``G``, ``Q X`` or ``X~`` (featbench.training.fastpath):
    ``<g_i, x_j> = [E Z^T]_ij``, ``||g_i||^2 = [E W W^T E^T]_ii``, ``X~ = M X`` with ``M`` from ``Q`` and the
    shared Gram matrix ``X X^T``, logits ``M Z``, gradient ``(M^T E~)^T X``. ``x`` (b, d) is shared.
    Per head: 4bdC + 2C^2 d + 2b^3 + 6b^2 C flops, against 8bdC + 4b^2 d for the direct step.

    ``active`` (optional, int64 indices of the heads with ``eta != 0``) restricts the augmentation work to
    those heads; the others train on the clean rows as the baseline does. Without it every head is
    computed and ``eta = 0`` heads are selected back to their clean logits on the device.
    """
    import torch

    from featbench.training.fastpath import LinearGrad, batch_gram, row_mix_logits, row_weights, select_heads, stacked_logits

    targets = Targets.hard(y)
    z = stacked_logits(x, weight)  # (K, b, C), shared by the gradient pass and the training pass
    e = loss.grad_logits(z, targets)  # rows of G = e W; also the clean rows' logit gradient
    if active is None:
        keep = (hp_column(eta, z) == 0)  # eta = 0 heads train on the clean rows, bit for bit
        mix = _sea_mix(x, z, e, weight, alpha, eta)
        dz = row_weights(loss.grad_logits(torch.where(keep, z, row_mix_logits(mix, z)), targets), None)
        return LinearGrad(torch.where(keep, dz, mix.transpose(1, 2) @ dz), x)
    dz = row_weights(e, None)
    if active.numel():
        za = z.index_select(0, active)
        mix = _sea_mix(x, za, e.index_select(0, active), weight.index_select(0, active), alpha.index_select(0, active),
                       eta.index_select(0, active), batch_gram(x))
        dza = row_weights(select_heads(loss, active).grad_logits(row_mix_logits(mix, za), targets), None)
        dz = dz.index_copy(0, active, mix.transpose(1, 2) @ dza)
    return LinearGrad(dz, x)


def _sea_mix(x, z, e, weight, alpha, eta, gram=None):
    """SeA's row mix ``M`` (X~ = M X) from the logits ``z`` and their gradient ``e`` (featbench.training.fastpath)."""
    from featbench.training.fastpath import batch_gram, clamp_norm, gradient_similarities, gradient_sq_norms, push_mix

    scores = gradient_similarities(e, z).div_(clamp_norm(gradient_sq_norms(e, weight)).unsqueeze(-1))
    return push_mix(masked_softmax_weights(scores, alpha), batch_gram(x) if gram is None else gram, eta)


class SeA(FeatureAugmenter):
    """SeA: push each feature towards the adversarial direction projected onto the other batch features."""

    hparams = (
        STEP_SIZE,
        HParam("alpha", 0.01, "entropy weight / softmax temperature of the projection, >= 0 (0 = one-hot)", low=0.0),
    )
    min_batch = 2  # the direction uses the *other* examples of the batch
    cuda_graph_safe = True  # deterministic, no host reads (featbench.training.fastpath.FusedAugmenter)

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
        from featbench.training.fastpath import per_row_loss

        if batch.x.dim() != 2 or not per_row_loss(self.run.loss):
            return None
        return sea_fused_gradients(batch.x, batch.y, batch.weight, self.run.loss, self.run.hp["alpha"], self.run.hp["eta"],
                                   self._active)


@hookimpl
def register_augmenters(registry):
    registry.add("sea", SeA)
