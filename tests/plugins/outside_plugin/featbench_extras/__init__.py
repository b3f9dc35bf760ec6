"""Two augmenters and a loss, written from docs/writing-a-plugin.md alone (the acceptance test of that guide).

``fdrop``: feature dropout; ``gnoise``: Gaussian noise on the unit sphere; ``ls_ce``: label-smoothed
cross-entropy. ``featbench check-plugin fdrop gnoise ls_ce`` passes.
"""

from featbench.api import Augmented, FeatureAugmenter, HParam, Loss, Targets, hookimpl, hp_column, per_head


class FeatureDropout(FeatureAugmenter):
    """Feature dropout: zero each dimension with probability p, then renormalise onto the unit sphere."""

    hparams = (
        HParam(
            "p",
            0.1,
            "drop probability, 0 <= p < 1",
            low=0.0,
            high=1.0,
            high_open=True,
            grids={"quick": (0.1, 0.3), "paper": (0.0, 0.1, 0.2, 0.3, 0.5)},
        ),
    )
    off = {"p": 0.0}

    def augment(self, batch):
        import torch

        x = per_head(batch.x, self.run.num_heads)  # (K, b, d)
        # The uniforms do not depend on p: one (b, d) draw from the shared stream, thresholded per head.
        u = torch.rand(x.shape[1:], generator=self.run.rng.shared).to(x)
        p = hp_column(self.run.hp["p"], x)  # (K, 1, 1)
        dropped = torch.nn.functional.normalize(x * (u >= p).to(x.dtype), dim=-1)
        return Augmented(torch.where(p == 0, x, dropped), Targets.hard(batch.y))


class GaussianNoise(FeatureAugmenter):
    """Gaussian noise: add N(0, sigma^2 / d) per dimension, then renormalise onto the unit sphere."""

    hparams = (
        HParam(
            "sigma", 0.1, "noise scale (norm of the expected noise vector), >= 0", low=0.0, grids={"quick": (0.05, 0.2)}
        ),
    )
    off = {"sigma": 0.0}

    def augment(self, batch):
        import torch

        x = per_head(batch.x, self.run.num_heads)
        noise = torch.randn(x.shape[1:], generator=self.run.rng.shared).to(x) / x.shape[-1] ** 0.5
        sigma = hp_column(self.run.hp["sigma"], x)
        noisy = torch.nn.functional.normalize(x + sigma * noise, dim=-1)
        return Augmented(torch.where(sigma == 0, x, noisy), Targets.hard(batch.y))


class LabelSmoothedCE(Loss):
    """Label-smoothed cross-entropy: mass 1 - eps on the target, eps spread evenly over all classes."""

    hparams = (
        HParam(
            "eps", 0.1, "smoothing mass, 0 <= eps < 1", low=0.0, high=1.0, high_open=True, grids={"quick": (0.05, 0.2)}
        ),
    )

    def per_row(self, logits, targets, hp):
        import torch

        index, w = _slots(logits, targets)
        eps = hp_column(hp["eps"], logits).squeeze(-1)  # (K, 1)
        mass = w.sum(-1)  # (K, r): 1 for every kind of targets
        on_target = (torch.gather(logits, -1, index) * w).sum(-1)
        return mass * torch.logsumexp(logits, -1) - (1 - eps) * on_target - eps * mass * logits.mean(-1)

    def grad_logits(self, logits, targets, hp):
        import torch

        index, w = _slots(logits, targets)
        eps = hp_column(hp["eps"], logits)  # (K, 1, 1)
        mass = w.sum(-1, keepdim=True)  # (K, r, 1)
        grad = mass * (torch.softmax(logits, -1) - eps / logits.shape[-1])
        return grad.scatter_add(-1, index, -(1 - eps) * w)


def _slots(logits, targets):
    """The targets' class index and weight of every slot, both (K, r, slots), the weights in the logits' dtype."""
    import torch

    K, r, _ = logits.shape
    index = targets.index.expand(K, r, targets.slots)
    if targets.weight is None:
        return index, torch.ones(index.shape, dtype=logits.dtype, device=logits.device)
    return index, targets.weight.to(logits.dtype).expand(index.shape)

@hookimpl
def register_augmenters(registry):
    registry.add("fdrop", FeatureDropout)
    registry.add("gnoise", GaussianNoise)


@hookimpl
def register_losses(registry):
    registry.add("ls_ce", LabelSmoothedCE)
