"""Helpers for in-batch directions and fused steps of K bias-free linear heads that share one mini-batch:
the building blocks of augmenters that push a feature towards a direction made of other rows of its batch
(SeA, SeA_Neg, Rand, mixdir, Adv, mixup), part of the plugin API (import them from :mod:`featbench.api`).

Notation: ``X`` (b, d) the shared batch rows, ``W`` (K, C, d) the heads, ``Z = X W^T`` (K, b, C) the
logits, ``E = dL/dZ`` (K, b, C) the logit gradient (for SeA's losses ``P - Y``). Every identity below is
exact in real arithmetic and is tested against the direct computation in float64
(tests/training/test_fast_identities.py):

1. **Weight gradient of a linear head** (no autograd): ``dL/dW = E^T X``. With a shared ``X`` the K
   heads' logits and gradients are each one GEMM over the stacked ``(K*C, d)`` weights
   (:func:`stacked_logits`, :func:`linear_weight_grad`).
2. **Feature gradients never formed**: ``G = E W`` (K, b, d) is what SeA normalises and projects, but only
   ``<g_i, x_j> = [E Z^T]_ij`` (:func:`gradient_similarities`, b*b*C instead of b*b*d work) and
   ``||g_i||^2 = [E (W W^T) E^T]_ii`` (:func:`gradient_sq_norms`, C*C*d instead of b*C*d) are needed.
3. **Shared Gram matrix** ``A = X X^T`` (:func:`batch_gram`): computed once per step for all K heads; for
   rows ``M X`` that are combinations of batch rows, ``||(M X)_i||^2 = [M A M^T]_ii`` and
   ``<x_i, (M X)_i> = [M A]_ii``.
4. **Row-mixing augmentations**: when the augmented batch is ``X~ = M X`` with ``M`` (K, b, b), its logits
   are ``M Z`` (:func:`row_mix_logits`, b*b*C instead of b*d*C, and ``X~`` is never formed) and its weight
   gradient is ``(M^T E~)^T X`` (:func:`row_mix_weight_grad`).
5. **Normalised pushes are row mixes**: ``normalize(X + eta * normalize(Q X)) = M X`` with
   ``M = diag(c) + diag(e) Q``, where ``c`` and ``e`` come from ``A`` and ``Q`` alone
   (:func:`push_mix`). SeA, Rand and mixdir are of this form; mixup (``lam X + (1 - lam) X[pi]``) is a
   row mix too.

The direct helpers (:func:`normalize_rows`, :func:`masked_softmax_weights`, :func:`push_along`,
:func:`span_direction`, :func:`feature_gradients`, :func:`sea_augment`) are the straightforward forms every
fused step is tested against. Heavy imports (torch) happen inside the functions.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import attrs

from .api import BoundLoss, HParam, Loss, Targets, hp_column, per_head

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from .api import Batch

#: ``F.normalize``'s epsilon; every norm below is clamped the same way so that fused == direct.
NORM_EPS = 1e-12

#: :func:`softmax_without_subnormals` keeps probabilities down to ``tiny * exp(SUBNORMAL_MARGIN)``.
SUBNORMAL_MARGIN = 30.0


# --------------------------------------------------------------------------------------------------
# Identity 1: logits and weight gradients of stacked linear heads


def stacked_logits(x: Tensor, weight: Tensor) -> Tensor:
    """``x W_k^T`` for every head, (K, r, C). A shared ``x`` (r, d) costs one GEMM over (K*C, d)."""
    K, C, d = weight.shape
    if x.dim() == 3:
        return x @ weight.transpose(1, 2)
    return (weight.reshape(K * C, d) @ x.T).view(K, C, -1).transpose(1, 2)


def linear_weight_grad(dz: Tensor, x: Tensor) -> Tensor:
    """``dL/dW_k = dz_k^T x`` (K, C, d) for logits ``x W_k^T`` with gradient ``dz`` (K, r, C)."""
    K, r, C = dz.shape
    if x.dim() == 3:
        return dz.transpose(1, 2) @ x
    return (dz.transpose(1, 2).reshape(K * C, r) @ x).view(K, C, -1)


def row_weights(dz: Tensor, row_weight: Tensor | None) -> Tensor:
    """Scale per-row logit gradients by the rows' loss weights (default: the mean, 1/r each)."""
    if row_weight is None:
        return dz / dz.shape[1]
    w = row_weight.to(dz.dtype)
    return dz * (w.unsqueeze(-1) if w.dim() == 2 else w.view(1, -1, 1))


def select_heads(loss: BoundLoss, heads: Tensor) -> BoundLoss:
    """The loss bound to a subset of the heads (every per-head hyper-parameter indexed by ``heads``)."""
    K = max((v.shape[0] for v in loss.hp.values() if getattr(v, "dim", lambda: 0)() == 1), default=0)
    hp = {
        k: v.index_select(0, heads) if getattr(v, "dim", lambda: 0)() == 1 and v.shape[0] == K else v
        for k, v in loss.hp.items()
    }
    return BoundLoss(loss.loss, hp)


def per_row_loss(loss: BoundLoss) -> bool:
    """True when the loss adds no batch-level term to its per-row losses (``Loss.batch_term`` not overridden)."""
    return getattr(type(loss.loss), "batch_term", None) is getattr(Loss, "batch_term", None)


@attrs.frozen
class LinearGrad:
    """A weight gradient ``dz^T x`` (K, C, d) kept as its factors, so the trainer can accumulate it straight
    into the momentum buffer with one GEMM (``addmm``) instead of materialising it."""

    dz: Tensor  # (K, r, C) row-weighted logit gradient
    x: Tensor  # (r, d) shared or (K, r, d) per head

    def dense(self) -> Tensor:
        return linear_weight_grad(self.dz, self.x)


def dense_grad(grad: Tensor | LinearGrad) -> Tensor:
    """The (K, C, d) gradient whichever form it comes in."""
    return grad.dense() if isinstance(grad, LinearGrad) else grad


# --------------------------------------------------------------------------------------------------
# Identities 2 and 3: feature-gradient geometry without forming G


def gradient_similarities(dz: Tensor, logits: Tensor) -> Tensor:
    """``<g_i, x_j>`` for ``G = dz W`` and logits ``Z = X W^T``: ``dz Z^T`` (K, b, b)."""
    return dz @ logits.transpose(1, 2)


def gradient_sq_norms(dz: Tensor, weight: Tensor, via_gram: bool | None = None) -> Tensor:
    """``||g_i||^2`` for ``G = dz W`` (K, b), clamped at 0.

    ``via_gram`` (default: when C < b) uses ``[dz (W W^T) dz^T]_ii`` (2*C*C*d + 2*b*C*C flops per head);
    otherwise ``G`` is formed (2*b*C*d).
    """
    C = weight.shape[1]
    if via_gram is None:
        via_gram = C < dz.shape[1]
    if via_gram:
        sq = ((dz @ (weight @ weight.transpose(1, 2))) * dz).sum(-1)
    else:
        sq = (dz @ weight).square().sum(-1)
    return sq.clamp_min(0)


def softmax_without_subnormals(scores: Tensor, dim: int = -1) -> Tensor:
    """``softmax(scores)`` with every probability below ``exp(-tail)`` times the row's largest set to exactly 0.

    ``tail = -log(tiny) - SUBNORMAL_MARGIN`` (57 in float32, 678 in float64), so no output over a row of n, nor
    any product of an output with a factor above ``n * exp(-SUBNORMAL_MARGIN)``, is subnormal. A sharp softmax (SeA's
    ``alpha = 0.01``, a loss' ``lamda = 0.1``) otherwise fills a fifth of its output with subnormal floats,
    on which x86 CPUs take a microcode assist per operation: a (24*256, 256) x (256, 256) product runs 40x
    slower, and every elementwise pass about 15x. The dropped mass is below ``n * exp(-tail)`` of the row's
    total (``4e-23`` for n = 256 in float32), far under one rounding unit, so the result equals
    ``torch.softmax`` to rounding (tested). Rows must contain a finite entry. Off the CPU it is ``torch.softmax``:
    GPUs run subnormal arithmetic at full speed, and the cut would cost 4 kernel launches per call.
    """
    import math

    import torch

    if scores.device.type != "cpu":
        return torch.softmax(scores, dim)
    tail = -math.log(torch.finfo(scores.dtype).tiny) - SUBNORMAL_MARGIN
    shifted = scores - scores.amax(dim, keepdim=True)
    return fast_softmax(shifted.masked_fill_(shifted < -tail, float("-inf")), dim)


#: Bytes of one SIMD register for the CPU capabilities ``torch.backends.cpu.get_cpu_capability()`` reports; the
#: CPU softmax kernel over the innermost dimension runs scalar code on rows shorter than one register.
_SIMD_BYTES = {"AVX512": 64, "AVX2": 32}


def fast_softmax(scores: Tensor, dim: int = -1) -> Tensor:
    """``torch.softmax(scores, dim)``, routed around the CPU kernel's slow case.

    On the CPU, ``torch.softmax`` over the last dimension runs a scalar loop per row when the rows are shorter
    than one SIMD register (16 float32 with AVX-512, 8 with AVX2): a (64, 256, 10) softmax over 10 classes
    takes 1.5 ms there, against 0.13 ms when the classes are not the innermost dimension (the kernel then
    vectorises across rows). So such a softmax is taken over ``scores.transpose(-1, -2)`` and transposed back:
    no copy when ``scores`` is already laid out that way (:func:`stacked_logits`' (K, r, C) view of a (K, C, r)
    product), and the result keeps that layout. Every other case goes to ``torch.softmax`` as is. Equal to
    ``torch.softmax`` to rounding (tested).
    """
    import torch

    last = scores.dim() - 1
    if (
        scores.device.type != "cpu"
        or last < 1
        or dim % scores.dim() != last
        or scores.shape[last] * scores.element_size() >= _SIMD_BYTES.get(_cpu_capability(), 0)
    ):
        return torch.softmax(scores, dim)
    return torch.softmax(scores.transpose(-1, -2), -2).transpose(-1, -2)


@functools.cache
def _cpu_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def batch_gram(x: Tensor) -> Tensor:
    """``A = X X^T`` (b, b), shared by every head."""
    return x @ x.T


def clamp_norm(sq: Tensor) -> Tensor:
    """``max(sqrt(sq), eps)``: the denominator ``F.normalize`` uses, from a squared norm."""
    return sq.clamp_min(0).sqrt().clamp_min(NORM_EPS)


# --------------------------------------------------------------------------------------------------
# Identities 4 and 5: augmentations that mix batch rows


def row_mix_logits(mix: Tensor, logits: Tensor) -> Tensor:
    """Logits of ``X~ = M X`` from the clean logits: ``M Z`` (K, b, C)."""
    return mix @ logits


def row_mix_weight_grad(mix: Tensor, dz: Tensor, x: Tensor) -> Tensor:
    """Weight gradient for rows ``X~ = M X`` with logit gradient ``dz``: ``(M^T dz)^T X`` (K, C, d)."""
    return linear_weight_grad(mix.transpose(1, 2) @ dz, x)


def push_mix(q: Tensor, gram: Tensor, eta: Tensor) -> Tensor:
    """``M`` (K, b, b) with ``M X = normalize(X + eta * normalize(Q X))`` row by row, from ``A = X X^T``.

    With ``s = Q X``: ``||s_i||^2 = [Q A Q^T]_ii``, ``<x_i, s_i> = [Q A]_ii``, ``||x_i||^2 = A_ii``; the
    direction is ``s_i / n_s`` with ``n_s = max(||s_i||, eps)``, and the pushed row's norm is
    ``n = max(||x_i + eta s_i / n_s||, eps)``, so ``M = diag(1 / n) + diag(eta / (n_s n)) Q``. Heads with
    ``eta = 0`` get the identity (the push keeps ``x`` bit for bit).
    """
    import torch

    qa = q @ gram  # (K, b, b); one GEMM over (K*b, b) rows
    s_sq = (qa * q).sum(-1)  # ||Q X||^2 per row
    xs = torch.diagonal(qa, dim1=-2, dim2=-1)  # <x_i, (Q X)_i>
    xx = torch.diagonal(gram)  # ||x_i||^2
    n_s = clamp_norm(s_sq)
    e = eta.to(q.dtype).view(-1, 1)
    n = clamp_norm(xx + 2 * e * xs / n_s + e * e * s_sq / (n_s * n_s))
    mix = q * (e / (n_s * n)).unsqueeze(-1)  # exactly 0 where eta = 0
    mix.diagonal(dim1=-2, dim2=-1).add_(torch.where(e == 0, torch.ones_like(n), 1 / n))
    return mix


# --------------------------------------------------------------------------------------------------
# Direct forms: in-batch directions and pushes


def normalize_rows(v):
    """``v / max(||v||, 1e-12)`` along the last dimension (``F.normalize``)."""
    import torch

    return torch.nn.functional.normalize(v, dim=-1, eps=1e-12)


def masked_softmax_weights(scores, alpha):
    """Projection weights ``q_i = softmax_{j != i}(scores_ij / alpha)`` (K, b, b), diagonal exactly 0.

    ``alpha = 0`` (per head) gives the one-hot ``argmax_{j != i}`` (SeA App. B.2). The diagonal is masked
    with -inf before the softmax (the official softmax-zero-renormalise route can produce 0/0), and weights
    below ``1e-25`` of the row's largest are exactly 0 on the CPU (``softmax_without_subnormals``: equal to
    rounding, and no subnormal floats to slow the CPU down). No host synchronisation on accelerators.
    """
    import torch

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


#: The step size of the in-batch direction methods (SeA, SeA_Neg, Rand, mixdir); 0 is the baseline.
STEP_SIZE = HParam("eta", 0.8, "augmentation step size, >= 0 (0 = baseline)", low=0.0)


def sea_augment(x, grad, alpha, eta):
    """The SeA augmentation from clean rows ``x`` and feature gradients ``grad`` (K, b, d)."""
    xk = per_head(x, grad.shape[0])
    scores = normalize_rows(grad) @ xk.transpose(1, 2)  # cosine of u_i with every x_j
    q = masked_softmax_weights(scores, alpha)
    return push_along(x, span_direction(q, xk), eta)
