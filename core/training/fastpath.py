"""The trainer's closed-form step for K bias-free linear heads that share one mini-batch (notation and the
identities in :mod:`featbench.directions`, tested in float64 in tests/training/test_fast_identities.py):

1. **Closed-form weight gradients** (:func:`closed_form_gradients`): for every augmented batch whose loss is a
   function of the logits only (no ``logit_adjust`` / ``extra_loss`` / ``row_loss`` / loss ``batch_term``),
   ``dL/dW = (w * dL/dZ)^T X`` without autograd.
2. **Factored momentum update**: a gradient ``E^T X`` is never materialised; :func:`sgd_momentum_`
   accumulates it into the momentum buffer with one GEMM (``buf = momentum * buf + E^T X``).

An augmenter may offer a whole fused step instead (``FeatureAugmenter.fused_gradients``, declared and documented
in :mod:`featbench.api`). The generic autograd path (``featbench.training.trainer.head_gradients``) stays the
reference every fast path is tested against. ``none`` and every augmenter whose batch loss depends on the
logits only get 1 and 2 (ME-ADA's appended rows and Core-tuning's concatenated rows included); ``sea``
fuses its whole step (``plugins/sea.py``). ISDA's differentiable logit adjustment takes the autograd path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..directions import LinearGrad, per_row_loss, row_weights, stacked_logits

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from ..api import Augmented, BoundLoss

_GENERIC_ONLY_FIELDS = ("logit_adjust", "extra_loss", "row_loss")  # Augmented fields that need autograd


def closed_form_eligible(aug: Augmented, loss: BoundLoss) -> bool:
    """True when the batch loss is ``sum_i row_weight_i * per_row(x_i W^T)``: no term that needs autograd
    through ``W`` (ISDA's ``logit_adjust``, an ``extra_loss``, a custom ``row_loss`` or a loss ``batch_term``)."""
    return per_row_loss(loss) and all(getattr(aug, name, None) is None for name in _GENERIC_ONLY_FIELDS)


def closed_form_gradients(aug: Augmented, weight: Tensor, loss: BoundLoss) -> LinearGrad:
    """Every head's weight gradient of its mean loss on ``aug`` in closed form: ``(w * dL/dZ)^T X``.

    Equals ``featbench.training.trainer.head_gradients`` whenever :func:`closed_form_eligible` holds (tested).
    """
    x = aug.x.detach()
    dz = loss.grad_logits(stacked_logits(x, weight), aug.targets)
    return LinearGrad(row_weights(dz, aug.row_weight), x)


def sgd_momentum_(
    weight: Tensor, buf: Tensor, grad: Tensor | LinearGrad, lr: Tensor, wd: Tensor, momentum: float
) -> None:
    """One SGD step in place, as ``torch.optim.SGD`` (dampening 0, no Nesterov) with per-head ``lr``, ``wd``
    (K, 1, 1): ``buf = momentum * buf + grad + wd * W``; ``W -= lr * buf``.

    A :class:`LinearGrad` is accumulated by one GEMM into ``buf`` (``beta = momentum``); a dense gradient
    is updated in place (its buffer is consumed). The two differ only in rounding order.
    """
    if isinstance(grad, LinearGrad):
        K, C, d = weight.shape
        a = grad.dz.transpose(1, 2)  # (K, C, r)
        if grad.x.dim() == 2:
            buf.view(K * C, d).addmm_(a.reshape(K * C, -1), grad.x, beta=momentum)
        else:
            buf.baddbmm_(a, grad.x, beta=momentum)
        buf.addcmul_(wd, weight)
    else:
        grad.addcmul_(wd, weight)
        buf.mul_(momentum).add_(grad)
    weight.addcmul_(lr, buf, value=-1)
