"""Rand: a uniformly random direction in the span of the other batch examples (SeA paper 4.1).

Per step and per example, ``q_i ~ Dirichlet(1, ..., 1)`` over the b - 1 indices j != i (q_ii = 0), then
``D = normalize(Q X)``, ``X~ = normalize(X + eta D)``, hard labels, replacement; no gradient pass
(SeA paper §4.1). Q is drawn from the shared stream (it does not depend on hyper-parameters), so every head
of a stack uses the same Q and only its own eta.

JUDGMENT (SeA paper §4.1): ``coeffs=dirichlet`` (default) draws q uniformly on the feasible set of
SeA's Eq. 6; ``coeffs=signed`` uses i.i.d. N(0, 1) coefficients instead (a random direction in the linear
span, not on the simplex). With b = 256 non-negative features a Dirichlet(1) combination is almost the
batch mean, which is why the paper finds Rand close to the baseline.
"""

from __future__ import annotations

from featbench.api import (
    STEP_SIZE,
    Augmented,
    Batch,
    FeatureAugmenter,
    HParam,
    Targets,
    hookimpl,
    per_head,
    push_along,
    span_direction,
)
from featbench.plugins.draws import dirichlet_off_diagonal, gaussian_off_diagonal

COEFFS = {"dirichlet": dirichlet_off_diagonal, "signed": gaussian_off_diagonal}


class Rand(FeatureAugmenter):
    """Rand: push each feature towards a random convex combination of the other batch features."""

    hparams = (
        STEP_SIZE,
        HParam("coeffs", "dirichlet", "random span coefficients: dirichlet (on the simplex) or signed (Gaussian)",
               choices=tuple(COEFFS)),
    )
    off = {"eta": 0.0}
    min_batch = 2

    def augment(self, batch: Batch) -> Augmented:
        b = batch.y.shape[0]
        q = COEFFS[self.run.options["coeffs"]](self.run.rng.shared, b).to(batch.x.device, batch.x.dtype)
        direction = per_head(span_direction(q, batch.x), self.run.num_heads)
        return Augmented(push_along(batch.x, direction, self.run.hp["eta"]), Targets.hard(batch.y))


@hookimpl
def register_augmenters(registry):
    registry.add("rand", Rand)
