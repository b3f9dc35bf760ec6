"""Is a gain real? Pure significance tests for differences between two augmenters on the same data.

* Several seeds (the same seeds, hence the same data order and initialisation, for both rows): a two-sided
  paired t-test on the per-seed values (:func:`paired_t_test`). If every seed gives exactly the same
  difference the t-test is undefined, and the per-example test of the first shared seed is used instead.
* One seed, top-1 accuracy: McNemar's exact test on the per-test-example correctness of the two final
  heads (:func:`mcnemar_exact`): under H0 the discordant examples split like a fair coin.
* One seed, mean per-class accuracy, or an average over several data sets: a paired bootstrap over test
  examples (:func:`paired_bootstrap`), resampling each data set's test set independently.

:func:`gain_test` picks the test the available data supports. Everything here is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

ALPHA = 0.05
PAIRED_T = "paired-t over seeds"
MCNEMAR = "McNemar exact"
BOOTSTRAP = "paired bootstrap"


@attrs.frozen
class PairedSample:
    """Per-test-example correctness of two heads on one test set, with its labels and metric."""

    correct_a: np.ndarray  # (n,) bool
    correct_b: np.ndarray  # (n,) bool
    y: np.ndarray  # (n,) int labels
    metric: str  # top1 | mean_per_class


@attrs.frozen
class GainTest:
    """The outcome of comparing row A against row B (gain = A - B, in points)."""

    gain: float
    p: float | None  # None when no test applies (missing data, a diverged run, a single unmatched seed)
    test: str | None

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 P[Binom(b + c, 1/2) <= min(b, c)])``.

    ``b`` = examples only A gets right, ``c`` = only B; 1.0 when they never disagree.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"correctness vectors differ in shape: {a.shape} vs {b_.shape}")
    only_a = int(np.sum(a & ~b_))
    only_b = int(np.sum(~a & b_))
    n = only_a + only_b
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(only_a, only_b), n, 0.5)))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided paired t-test p-value of mean(a - b) = 0.

    None when it is undefined: fewer than 2 pairs, a NaN, or differences without spread (every seed
    gave the same difference, so the seeds carry no information about the noise). All-zero
    differences give 1.0.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 2 or not np.all(np.isfinite(d)):
        return None
    sd = float(np.std(d, ddof=1))
    mean = float(np.mean(d))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return 1.0 if np.all(d == 0) else None
    from scipy.stats import t

    stat = mean / (sd / math.sqrt(d.size))
    return float(min(1.0, 2.0 * t.sf(abs(stat), d.size - 1)))


def _resampled_metric(correct: np.ndarray, y: np.ndarray, idx: np.ndarray, metric: str) -> np.ndarray:
    """The metric (percent) of ``correct`` on each row of resampled indices ``idx`` (B, n): shape (B,)."""
    hits = correct[idx].astype(np.float64)
    if metric == "top1":
        return 100.0 * hits.mean(axis=1)
    if metric != "mean_per_class":
        raise ValueError(f"unknown metric {metric!r}")
    C = int(y.max()) + 1
    B = idx.shape[0]
    flat = (np.arange(B)[:, None] * C + y[idx]).ravel()
    counts = np.bincount(flat, minlength=B * C).reshape(B, C)
    per = np.bincount(flat, weights=hits.ravel(), minlength=B * C).reshape(B, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, per / np.maximum(counts, 1), np.nan)
    return 100.0 * np.nanmean(recall, axis=1)


def paired_bootstrap(samples: Sequence[PairedSample], resamples: int = 2000, seed: int = 0, chunk: int = 250) -> float:
    """Two-sided paired-bootstrap p-value that the mean over ``samples`` of metric(A) - metric(B) is 0.

    Each test set is resampled with replacement independently (the same indices for A and B); ``p =
    min(1, 2 min((#{d* <= 0} + 1) / (R + 1), (#{d* >= 0} + 1) / (R + 1)))``.
    """
    if not samples:
        raise ValueError("paired_bootstrap needs at least one sample")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for s in samples:
        ca, cb = np.asarray(s.correct_a, dtype=bool), np.asarray(s.correct_b, dtype=bool)
        y = np.asarray(s.y, dtype=np.int64)
        if not (ca.shape == cb.shape == y.shape):
            raise ValueError(f"paired sample shapes differ: {ca.shape}, {cb.shape}, {y.shape}")
        n = y.size
        for start in range(0, resamples, chunk):
            stop = min(resamples, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            total[start:stop] += _resampled_metric(ca, y, idx, s.metric) - _resampled_metric(cb, y, idx, s.metric)
    diffs = total / len(samples)
    le = (np.sum(diffs <= 0) + 1) / (resamples + 1)
    ge = (np.sum(diffs >= 0) + 1) / (resamples + 1)
    return float(min(1.0, 2.0 * min(le, ge)))


def gain_test(values_a: Mapping[int, float], values_b: Mapping[int, float],
              samples: Sequence[PairedSample] | None) -> GainTest:
    """Compare row A with row B on one column (or on an average of columns).

    ``values_*``: the reported value per seed. ``samples``: per-example data of one seed both rows share,
    one per data set (None if unavailable). The gain is mean(A) - mean(B) over each row's own seeds. With
    two or more shared seeds the test is a paired t-test over them; with one shared seed, or when the
    t-test is undefined (the same difference on every seed), a per-example test on ``samples``.
    """
    if not values_a or not values_b:
        return GainTest(float("nan"), None, None)
    gain = float(np.mean(list(values_a.values())) - np.mean(list(values_b.values())))
    if not math.isfinite(gain):
        return GainTest(gain, None, None)
    common = sorted(set(values_a) & set(values_b))
    if len(common) >= 2:
        p = paired_t_test([values_a[s] for s in common], [values_b[s] for s in common])
        if p is not None:
            return GainTest(gain, p, PAIRED_T)
    if common and samples:
        if len(samples) == 1 and samples[0].metric == "top1":
            return GainTest(gain, mcnemar_exact(samples[0].correct_a, samples[0].correct_b), MCNEMAR)
        return GainTest(gain, paired_bootstrap(samples), BOOTSTRAP)
    return GainTest(gain, None, None)
