"""The no-augmentation baseline: train the heads on the clean features."""

from __future__ import annotations

from featbench import hookimpl
from featbench.api import Augmented, Batch, FeatureAugmenter, Targets


class NoAugmentation(FeatureAugmenter):
    """No augmentation (the paper's Baseline): clean features, hard labels.

    Its step is the trainer's closed-form one (featbench.training.fastpath): ``dL/dW = (dL/dZ)^T X``, no autograd.
    """

    cuda_graph_safe = True  # deterministic, no host reads (featbench.training.fastpath.FusedAugmenter)

    def augment(self, batch: Batch) -> Augmented:
        return Augmented(batch.x, Targets.hard(batch.y))


@hookimpl
def register_augmenters(registry):
    registry.add("none", NoAugmentation)
