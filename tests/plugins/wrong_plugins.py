"""Two plausible but wrong plugins (a -p module for the tests): each must fail ``featbench check-plugin``
with a message naming the property it breaks.

``fdrop_shared`` draws a (K, b, d) dropout mask from ``rng.shared``: head k of a stack then uses draws a
single run of its configuration never sees (breaks "K-stack equals single runs"). ``ls_ce_zero_grad``
returns a zero ``grad_logits``: the trainer's closed-form step would train nothing (breaks "grad_logits
equals autograd of per_row").
"""

from featbench.api import Augmented, FeatureAugmenter, HParam, Loss, Targets, hookimpl, hp_column, per_head


class SharedMaskDropout(FeatureAugmenter):
    """Feature dropout with a (K, b, d) mask from the shared stream (wrong: heads draw differently)."""

    hparams = (HParam("p", 0.1, "drop probability, 0 <= p < 1", low=0.0, high=1.0, high_open=True),)

    def augment(self, batch):
        import torch

        x = per_head(batch.x, self.run.num_heads)
        u = torch.rand(x.shape, generator=self.run.rng.shared).to(x)  # (K, b, d): depends on K
        keep = (u >= hp_column(self.run.hp["p"], x)).to(x.dtype)
        return Augmented(torch.nn.functional.normalize(x * keep, dim=-1), Targets.hard(batch.y))


class ZeroGradLabelSmoothedCE(Loss):
    """Label-smoothed cross-entropy whose grad_logits is zero (wrong: trains nothing)."""

    hparams = (HParam("eps", 0.1, "smoothing mass, 0 <= eps < 1", low=0.0, high=1.0, high_open=True),)

    def per_row(self, logits, targets, hp):
        import torch

        K, r, C = logits.shape
        eps = hp_column(hp["eps"], logits).squeeze(-1)
        probs = targets.dense_probs(C).to(logits.dtype).expand(K, r, C)
        smooth = (1 - eps.unsqueeze(-1)) * probs + eps.unsqueeze(-1) / C
        return -(smooth * torch.log_softmax(logits, -1)).sum(-1)

    def grad_logits(self, logits, targets, hp):
        import torch

        return torch.zeros_like(logits)


@hookimpl
def register_augmenters(registry):
    registry.add("fdrop_shared", SharedMaskDropout)


@hookimpl
def register_losses(registry):
    registry.add("ls_ce_zero_grad", ZeroGradLabelSmoothedCE)
