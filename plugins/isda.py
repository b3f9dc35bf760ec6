"""ISDA: implicit semantic data augmentation as a logit transform (Wang et al., TPAMI 2021).

ISDA trains on the closed-form upper bound of the expected loss under class-conditional Gaussian feature
noise ``x + eps``, ``eps ~ N(0, lam_t Sigma_y)``: the logits become
``z~_ic = z_ic + (lam_t / 2) sigma2_{y_i, c}`` with ``sigma2_{y,c} = (w_c - w_y)^T Sigma_y (w_c - w_y)``
(so ``sigma2_{y,y} = 0``), differentiable in W (W is *not* detached; Sigma is), and ``lam_t = lambda0 *
epoch / epochs`` with 0-based epochs (0 in the first epoch).

Class statistics are population (ddof = 0) moments of the fixed, clean training features, computed once.
The official online estimator equals them from the end of epoch 0 on, and lam_t = 0 during epoch 0, so
precomputing them is exact (ISDA, Wang et al., TPAMI 2021; tested against a port of the estimator).

JUDGMENT (ISDA, Wang et al., TPAMI 2021):
* ``cov=diag`` (default): per-dimension variances, the ISDA authors' own large-d choice. Memory C*d; never
  b*d*d or C*d*d (two (U, d) x (d, C) products per step, U = classes in the batch).
* ``cov=full``: the exact full covariance in data form, ``sigma2_{u,c} = mean_k (A_u[k,c] - A_u[k,u])^2``
  with ``A_u = (X_u - mu_u) W^T``: memory n*d (the centred features) + n_B*C, about 6 n_B d C FLOPs a step
  (n_B = training rows of the classes in the batch) -- exact but slow at d = 8192.
* ``surrogate=ce`` (default, faithful): ISDA's own loss, cross-entropy on z~, whatever ``--loss`` is.
  ``surrogate=run``: the same Jensen bound for the run's smoothed hinge (lamda_s, delta), i.e. the run's
  loss on ``z + lam_t / (2 lamda_s) sigma2`` (lamda_s = the loss' ``lamda`` when it has one, else 1).
"""

from __future__ import annotations

from featbench.api import Augmented, Batch, FeatureAugmenter, HParam, RunInfo, Targets, hookimpl, hp_column
from featbench.plugins.losses import cross_entropy_rows


def class_moments(x, y, num_classes: int):
    """Per-class means (C, d), population variances (C, d) and the centred rows ``x - mu_y`` (n, d)."""
    import torch

    counts = torch.bincount(y, minlength=num_classes).clamp(min=1).to(x.dtype).unsqueeze(1)
    mean = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, y, x) / counts
    centred = x - mean[y]
    var = torch.zeros_like(mean).index_add_(0, y, centred * centred) / counts
    return mean, var, centred


def diag_sigma2(weight, var_u, u):
    """``sigma2_{u,c} = sum_a v_{u,a} (w_{c,a} - w_{u,a})^2`` for the classes ``u`` (U,) and every c.

    Expanded into two (U, d) x (d, C) products per head (no (U, C, d) tensor); clamped at 0 against fp32
    cancellation and exactly 0 at c = u. ``weight`` (K, C, d), ``var_u`` (U, d); result (K, U, C).
    """
    import torch

    w_u = weight[:, u]  # (K, U, d)
    wt = weight.transpose(1, 2)
    s = var_u @ (weight * weight).transpose(1, 2) - 2 * ((var_u * w_u) @ wt) + (var_u * w_u * w_u).sum(-1, keepdim=True)
    own = torch.nn.functional.one_hot(u, weight.shape[1]).bool()
    return s.clamp(min=0).masked_fill(own, 0)


def full_sigma2(weight, centred, row_pos, row_class, num_u: int):
    """Exact ``sigma2_{u,c} = (w_c - w_u)^T Sigma_u (w_c - w_u)`` in data form.

    ``centred`` (m, d): the centred training rows of the classes in the batch; ``row_class`` (m,) their
    class; ``row_pos`` (m,) the position of that class among the U batch classes. Result (K, U, C).
    """
    import torch

    a = centred @ weight.transpose(1, 2)  # (K, m, C)
    own = a.gather(-1, row_class.expand(a.shape[0], -1).unsqueeze(-1))
    sq = (a - own) ** 2
    K, _, C = a.shape
    total = torch.zeros(K, num_u, C, dtype=a.dtype, device=a.device).index_add(1, row_pos, sq)
    counts = torch.bincount(row_pos, minlength=num_u).to(a.dtype)
    return total / counts.view(1, -1, 1)


def isda_strength(lambda0, epoch: int, epochs: int):
    """The official schedule ``lam_t = lambda0 * epoch / epochs`` (0-based epochs), per head."""
    return lambda0 * (epoch / epochs)


class ISDA(FeatureAugmenter):
    """ISDA: the upper-bound surrogate of class-conditional Gaussian feature noise (a logit transform)."""

    hparams = (
        HParam(
            "lambda0", 0.5, "final strength of the Gaussian augmentation, >= 0 (0 = cross-entropy baseline)", low=0.0
        ),
        HParam(
            "cov",
            "diag",
            "class covariance: diag (per-dimension variances) or full (exact, data form)",
            choices=("diag", "full"),
        ),
        HParam(
            "surrogate",
            "ce",
            "ISDA's cross-entropy bound (ce) or the bound for the run's loss (run)",
            choices=("ce", "run"),
        ),
    )
    off = {"lambda0": 0.0, "surrogate": "run"}  # surrogate=ce with lambda0 = 0 is plain cross-entropy

    def __init__(self, run: RunInfo):
        super().__init__(run)
        import torch

        _, self.var, centred = class_moments(run.train_x, run.train_y, run.num_classes)
        self.full = run.options["cov"] == "full"
        self.centred = centred if self.full else None
        self.ce = run.options["surrogate"] == "ce"
        lamda_s = run.hp["lamda"] if (not self.ce and "lamda" in run.hp) else torch.ones_like(run.hp["lambda0"])
        self.half_over_lamda = 0.5 / lamda_s

    def sigma2_rows(self, weight, y):
        """sigma2_{y_i, c} for the rows of a batch, (K, b, C), differentiable in ``weight``."""
        import torch

        u, pos = torch.unique(y, return_inverse=True)
        if self.full and u.shape[0] == self.run.num_classes:  # every class present: no gather of the rows
            s = full_sigma2(weight, self.centred, self.run.train_y, self.run.train_y, u.shape[0])
        elif self.full:
            mask = torch.isin(self.run.train_y, u)
            row_class = self.run.train_y[mask]
            s = full_sigma2(weight, self.centred[mask], torch.searchsorted(u, row_class), row_class, u.shape[0])
        else:
            s = diag_sigma2(weight, self.var[u], u)
        return s[:, pos]

    def augment(self, batch: Batch) -> Augmented:
        targets = Targets.hard(batch.y)
        row_loss = (lambda z: cross_entropy_rows(z, targets.index, None)) if self.ce else None
        strength = isda_strength(self.run.hp["lambda0"], batch.epoch, self.run.epochs)
        if not bool((strength > 0).any()):
            return Augmented(batch.x, targets, row_loss=row_loss)
        scale = strength * self.half_over_lamda

        def logit_adjust(logits, weight):
            return logits + hp_column(scale, logits) * self.sigma2_rows(weight, batch.y)

        return Augmented(batch.x, targets, logit_adjust=logit_adjust, row_loss=row_loss)


@hookimpl
def register_augmenters(registry):
    registry.add("isda", ISDA)
