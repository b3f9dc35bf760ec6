"""The evaluation protocol of one cell: select hyper-parameters on validation, refit, score test.

With several configurations: train them all (one K-stack per structural group) on the training split,
score the validation split (``val_x`` if the feature set has one, else a seeded stratified hold-out of the
training set), pick the best (first on ties), refit it on train+val and score test. With one
configuration: train it on train+val and score test. (BYOL / Kornblith linear-evaluation protocol.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from . import metrics
from .api import FeatureAugmenter, HParam, Loss
from .features import FeatureSet
from .grid import structural_groups
from .train import TrainSettings, predict, train_heads


@attrs.frozen
class CellResult:
    """The outcome of one (feature set, augmenter, seed) cell."""

    augmenter: str
    loss: str
    features: str
    metric: str
    value: float  # the feature set's metric on test, percent
    top1: float
    mean_per_class: float
    hp: dict  # the chosen configuration
    seed: int
    seconds: float
    grid_size: int
    val_value: float | None  # the chosen configuration's validation score (None without a search)
    val_scores: tuple  # validation score per configuration, grid order (NaN for diverged)
    diverged: tuple  # configurations whose training diverged
    correct: np.ndarray = attrs.field(eq=False, repr=False)  # per-test-example correctness of the final head
    unaugmented_batches: int = 0


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with about ``fraction`` of every class held out (at least one row per class
    with >= 2 rows stays in each part)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _train_grid(x, y, C, aug_cls, loss, params, configs, settings):
    """Train every configuration (grouped into K-stacks); returns (weights list, diverged list, unaug)."""
    weights: list = [None] * len(configs)
    diverged = [False] * len(configs)
    unaug = 0
    for group in structural_groups(params, configs):
        res = train_heads(x, y, C, aug_cls, loss, [configs[i] for i in group], settings)
        for j, i in enumerate(group):
            weights[i] = res.weight[j:j + 1]
            diverged[i] = res.diverged[j]
        unaug += res.unaugmented_batches
    return weights, diverged, unaug


def run_cell(
    fs: FeatureSet,
    aug_name: str,
    aug_cls: type[FeatureAugmenter],
    loss_name: str,
    loss: Loss,
    params: Mapping[str, HParam],
    configs: Sequence[Mapping[str, float]],
    settings: TrainSettings,
    val_fraction: float = 0.2,
) -> CellResult:
    import time

    start = time.perf_counter()
    C = fs.num_classes
    val_scores: tuple = ()
    val_value = None
    if fs.has_val:
        fit_x, fit_y = np.concatenate([fs.train_x, fs.val_x]), np.concatenate([fs.train_y, fs.val_y])
    else:
        fit_x, fit_y = fs.train_x, fs.train_y
    diverged: tuple = ()
    if len(configs) > 1:
        if fs.has_val:
            tx, ty, vx, vy = fs.train_x, fs.train_y, fs.val_x, fs.val_y
        else:
            tr, va = stratified_holdout(fs.train_y, val_fraction, settings.seed)
            tx, ty, vx, vy = fs.train_x[tr], fs.train_y[tr], fs.train_x[va], fs.train_y[va]
        weights, div, _ = _train_grid(tx, ty, C, aug_cls, loss, params, configs, settings)
        scores = []
        for w, dv in zip(weights, div):
            scores.append(float("nan") if dv else float(metrics.score(fs.metric, predict(w, vx, settings.device), vy, C)[0]))
        diverged = tuple(div)
        val_scores = tuple(scores)
        finite = [i for i, s in enumerate(scores) if not np.isnan(s)]
        best = max(finite, key=lambda i: (scores[i], -i)) if finite else 0
        val_value = scores[best]
        chosen = dict(configs[best])
    else:
        chosen = dict(configs[0])
    res = train_heads(fit_x, fit_y, C, aug_cls, loss, [chosen], settings)
    pred = predict(res.weight, fs.test_x, settings.device)[0]
    correct = pred == fs.test_y
    t1 = float(metrics.top1(pred, fs.test_y)[0])
    mpc = float(metrics.mean_per_class(pred, fs.test_y, C)[0])
    value = float("nan") if res.diverged[0] else (t1 if fs.metric == "top1" else mpc)
    return CellResult(augmenter=aug_name, loss=loss_name, features=fs.name, metric=fs.metric, value=value, top1=t1,
                      mean_per_class=mpc, hp=chosen, seed=settings.seed, seconds=time.perf_counter() - start,
                      grid_size=len(configs), val_value=val_value, val_scores=val_scores,
                      diverged=diverged or res.diverged, correct=correct, unaugmented_batches=res.unaugmented_batches)
