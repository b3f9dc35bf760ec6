"""A complete third-party featbench plugin: one augmenter with one hyper-parameter.

Installed, it is found through the ``featbench`` entry-point group; nothing else is needed.
"""

from featbench.api import Augmented, FeatureAugmenter, HParam, Targets, hookimpl, hp_column, per_head


class Jitter(FeatureAugmenter):
    """Add isotropic Gaussian noise of scale sigma, then project back onto the unit sphere."""

    hparams = (HParam("sigma", 0.05, "noise scale, >= 0", low=0.0),)

    def augment(self, batch):
        import torch

        x = per_head(batch.x, self.run.num_heads)
        # Noise does not depend on sigma, so draw it once from the shared stream.
        noise = torch.randn(x.shape[1:], generator=self.run.rng.shared).to(x.device)
        sigma = hp_column(self.run.hp["sigma"], x)
        x_aug = torch.nn.functional.normalize(x + sigma * noise, dim=-1)
        return Augmented(x_aug, Targets.hard(batch.y))


@hookimpl
def register_augmenters(registry):
    registry.add("jitter", Jitter)
