"""Classification metrics over K heads' predictions (pure numpy)."""

from __future__ import annotations

import numpy as np

from ..api import METRICS


def top1(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Top-1 accuracy in percent of each row of ``pred`` (K, n) against ``y`` (n,): shape (K,)."""
    return 100.0 * (np.atleast_2d(pred) == y[None, :]).mean(axis=1)


def mean_per_class(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean over the classes present in ``y`` of the per-class recall, in percent: shape (K,)."""
    pred = np.atleast_2d(pred)
    correct = (pred == y[None, :]).astype(np.float64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.stack([np.bincount(y, weights=c, minlength=num_classes) for c in correct])
    return 100.0 * (per_class[:, present] / counts[present]).mean(axis=1)


def score(metric: str, pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """``metric`` (one of :data:`featbench.api.METRICS`, each named after its function here) of ``pred``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return mean_per_class(pred, y, num_classes) if metric == "mean_per_class" else top1(pred, y)
