"""Training losses: the smoothed hinge of the SeA paper (default) and plain cross-entropy.

The math is in pure functions over (K, r, C) logits and slot targets (see ``featbench.api.Targets``);
the classes only declare hyper-parameters.
"""

from __future__ import annotations

from featbench.api import HParam, Loss, Targets, hookimpl, hp_column, softmax_without_subnormals


def smoothed_hinge_rows(logits, index, weight, lamda, delta):
    """Per-row smoothed hinge loss (SeA Eq. 15) with slot targets.

    ``l(z, y) = lamda * log(1 + sum_{c != y} exp((z_c + delta - z_y) / lamda))``, computed as the official
    code does: subtract ``delta`` from the target logit, ``lamda * CE(z' / lamda, y)``. A row with several
    slots gets ``sum_s weight_s * l(z, index_s)``.

    :param logits: (K, r, C). :param index: (r, m) or (K, r, m) class of each slot.
    :param weight: same shape as ``index`` or None (one slot, weight 1). :param lamda, delta: (K,).
    :return: (K, r).
    """
    import torch

    K, r, C = logits.shape
    index = index.expand(K, r, index.shape[-1])
    lam = hp_column(lamda, logits).unsqueeze(-1)  # (K, 1, 1, 1)
    dlt = hp_column(delta, logits).unsqueeze(-1)
    onehot = torch.nn.functional.one_hot(index, C).to(logits.dtype)  # (K, r, m, C)
    shifted = logits.unsqueeze(-2) - dlt * onehot  # target logit of each slot lowered by delta
    target = torch.gather(logits, -1, index)  # (K, r, m)
    per_slot = lam.squeeze(-1) * torch.logsumexp(shifted / lam, dim=-1) - (target - dlt.squeeze(-1))
    if weight is None:
        return per_slot.sum(-1)
    return (per_slot * weight.expand(K, r, index.shape[-1]).to(logits.dtype)).sum(-1)


def smoothed_hinge_grad(logits, index, weight, lamda, delta):
    """Closed-form gradient of the summed per-row losses w.r.t. the logits: ``sum_s w_s (p_s - e_s)``
    with ``p_s = softmax((z - delta e_s) / lamda)`` (SeA Prop. 4). Shape (K, r, C).

    The softmax is ``softmax_without_subnormals``: a small ``lamda`` makes it sharp, and the subnormal
    probabilities ``torch.softmax`` would return slow every later product on x86 CPUs; equal to rounding."""
    import torch

    K, r, C = logits.shape
    index = index.expand(K, r, index.shape[-1])
    if weight is None and index.shape[-1] == 1:  # hard labels: the same numbers in fewer passes
        lam, dlt = hp_column(lamda, logits), hp_column(delta, logits)
        shifted = logits.scatter_add(-1, index, (-dlt).expand(K, r, 1)).div_(lam)
        return softmax_without_subnormals(shifted).scatter_add_(-1, index, torch.full_like(dlt, -1.0).expand(K, r, 1))
    lam = hp_column(lamda, logits).unsqueeze(-1)
    dlt = hp_column(delta, logits).unsqueeze(-1)
    onehot = torch.nn.functional.one_hot(index, C).to(logits.dtype)
    probs = softmax_without_subnormals((logits.unsqueeze(-2) - dlt * onehot) / lam)
    g = probs - onehot  # (K, r, m, C)
    if weight is None:
        return g.sum(-2)
    return (g * weight.expand(K, r, index.shape[-1]).to(logits.dtype).unsqueeze(-1)).sum(-2)


def cross_entropy_rows(logits, index, weight):
    """Per-row cross-entropy ``logsumexp(z) - sum_s w_s z_{index_s}``; (K, r, C) -> (K, r)."""
    import torch

    K, r, _ = logits.shape
    index = index.expand(K, r, index.shape[-1])
    target = torch.gather(logits, -1, index)
    if weight is not None:
        target = target * weight.expand(K, r, index.shape[-1]).to(logits.dtype)
    return torch.logsumexp(logits, dim=-1) - target.sum(-1)


class SmoothedHinge(Loss):
    """Smoothed multi-class hinge (SeA Eq. 15); lamda=1, delta=0 is cross-entropy."""

    hparams = (
        HParam(
            "lamda", 0.1, "smoothing of the hinge, > 0 (SeA's lambda; -> 0 gives the hinge)", low=0.0, low_open=True
        ),
        HParam("delta", 0.0, "margin added to every non-target logit in training, >= 0", low=0.0),
    )

    def per_row(self, logits, targets: Targets, hp):
        return smoothed_hinge_rows(logits, targets.index, targets.weight, hp["lamda"], hp["delta"])

    def grad_logits(self, logits, targets: Targets, hp):
        return smoothed_hinge_grad(logits, targets.index, targets.weight, hp["lamda"], hp["delta"])


class CrossEntropy(Loss):
    """Cross-entropy with hard or soft targets."""

    def per_row(self, logits, targets: Targets, hp):
        return cross_entropy_rows(logits, targets.index, targets.weight)

    def grad_logits(self, logits, targets: Targets, hp):
        """``softmax(z) - sum_s w_s e_{index_s}``, accumulated in the logits' dtype (the softmax without
        subnormal floats, as in :func:`smoothed_hinge_grad`)."""
        import torch

        K, r, C = logits.shape
        index = targets.index.expand(K, r, targets.slots)
        if targets.weight is None:
            w = torch.ones(index.shape, dtype=logits.dtype, device=logits.device)
        else:
            w = targets.weight.to(logits.dtype).expand(index.shape)
        return softmax_without_subnormals(logits).scatter_add_(-1, index, -w)


@hookimpl
def register_losses(registry):
    registry.add("hinge", SmoothedHinge)
    registry.add("ce", CrossEntropy)
