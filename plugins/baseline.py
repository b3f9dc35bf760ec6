"""The no-augmentation baseline: train the heads on the clean features."""

from __future__ import annotations

from featbench.api import Augmented, Batch, FeatureAugmenter, Targets, hookimpl


class NoAugmentation(FeatureAugmenter):
    """No augmentation (the paper's Baseline): clean features, hard labels.

    Its step is the trainer's own closed-form one: ``dL/dW = (dL/dZ)^T X``, no autograd.
    """

    cuda_graph_safe = True  # deterministic, no host reads (FeatureAugmenter.cuda_graph_safe)

    def augment(self, batch: Batch) -> Augmented:
        return Augmented(batch.x, Targets.hard(batch.y))


@hookimpl
def register_augmenters(registry):
    registry.add("none", NoAugmentation)
