"""Significance tests: exact values against independent computations, and the choice of test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featbench.reporting import significance as sig
from featbench.training import metrics


def _pair(only_a: int, only_b: int, both: int = 0, neither: int = 0):
    a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, dtype=bool)
    b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, dtype=bool)
    return a, b


def _mcnemar_by_enumeration(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("b,c", [(0, 10), (3, 17), (12, 12), (40, 25), (1, 0), (0, 0), (150, 110)])
def test_mcnemar_exact_matches_binomial_enumeration(b, c):
    a, bb = _pair(b, c, both=50, neither=7)
    assert sig.mcnemar_exact(a, bb) == pytest.approx(_mcnemar_by_enumeration(b, c), rel=1e-9, abs=1e-15)


def test_mcnemar_known_value_and_symmetry():
    a, b = _pair(0, 10)
    assert sig.mcnemar_exact(a, b) == pytest.approx(2 / 1024)
    assert sig.mcnemar_exact(b, a) == pytest.approx(2 / 1024)
    # concordant examples carry no information
    a2, b2 = _pair(0, 10, both=1000, neither=1000)
    assert sig.mcnemar_exact(a2, b2) == pytest.approx(2 / 1024)


def test_paired_t_known_value():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]  # d = 1, 2, 2, 3: mean 2, sd sqrt(2/3), t = 4.899, df 3
    from scipy.stats import ttest_rel

    assert sig.paired_t_test(a, b) == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-12)
    assert sig.paired_t_test(a, b) == pytest.approx(0.016277, abs=1e-6)


def test_paired_t_undefined_cases():
    assert sig.paired_t_test([1.0], [0.0]) is None
    assert sig.paired_t_test([1.0, float("nan")], [0.0, 0.0]) is None
    assert sig.paired_t_test([2.0, 3.0], [1.0, 2.0]) is None  # same difference on every seed: no noise estimate
    assert sig.paired_t_test([2.0, 3.0], [2.0, 3.0]) == 1.0


def test_resampled_metric_equals_metrics_on_identity_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=200)
    pred = np.where(rng.random(200) < 0.7, y, (y + 1) % 5)
    correct = pred == y
    idx = np.arange(200)[None, :]
    assert sig._resampled_metric(correct, y, idx, "top1")[0] == pytest.approx(metrics.top1(pred, y)[0])
    assert sig._resampled_metric(correct, y, idx, "mean_per_class")[0] == pytest.approx(metrics.mean_per_class(pred, y, 5)[0])


def test_bootstrap_identical_rows_are_not_significant():
    y = np.arange(300) % 3
    c = np.random.default_rng(1).random(300) < 0.8
    s = sig.PairedSample(c, c.copy(), y, "top1")
    assert sig.paired_bootstrap([s], resamples=500) == 1.0


def test_bootstrap_detects_a_clear_difference_and_is_reproducible():
    rng = np.random.default_rng(2)
    y = np.arange(400) % 4
    a = rng.random(400) < 0.9
    b = rng.random(400) < 0.6
    s = sig.PairedSample(a, b, y, "top1")
    p = sig.paired_bootstrap([s], resamples=999, seed=3)
    assert p == pytest.approx(2 / 1000)  # no resample shows a difference <= 0
    assert sig.paired_bootstrap([s], resamples=999, seed=3) == p
    assert sig.paired_bootstrap([sig.PairedSample(b, a, y, "top1")], resamples=999, seed=3) == p


def test_bootstrap_uses_the_metric():
    # 900 examples of class 0, 100 of class 1: A misses 100 of class 0, B misses all of class 1.
    y = np.array([0] * 900 + [1] * 100)
    a = np.ones(1000, dtype=bool)
    a[:100] = False
    b = np.ones(1000, dtype=bool)
    b[900:] = False
    assert a.mean() == b.mean()  # equal top-1 accuracy
    p_top1 = sig.paired_bootstrap([sig.PairedSample(a, b, y, "top1")], resamples=500)
    p_mpc = sig.paired_bootstrap([sig.PairedSample(a, b, y, "mean_per_class")], resamples=500)
    assert p_top1 > 0.5
    assert p_mpc < 0.01


def test_gain_test_chooses_the_test():
    a, b = _pair(0, 30, both=100)
    y = np.zeros(a.size, dtype=np.int64)
    t = sig.gain_test({0: 1.0, 1: 2.0, 2: 1.5}, {0: 0.5, 1: 0.4, 2: 0.9}, None)
    assert t.test == sig.PAIRED_T and t.gain == pytest.approx(0.9)
    t = sig.gain_test({0: 80.0}, {0: 70.0}, [sig.PairedSample(b, a, y, "top1")])
    assert t.test == sig.MCNEMAR and t.significant
    t = sig.gain_test({0: 80.0}, {0: 70.0}, [sig.PairedSample(b, a, y, "mean_per_class")])
    assert t.test == sig.BOOTSTRAP and t.significant
    # the same difference on both seeds: the seed test is undefined, the per-example one decides
    t = sig.gain_test({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}, [sig.PairedSample(a, a, y, "top1")])
    assert t.test == sig.MCNEMAR and t.p == 1.0 and not t.significant
    assert sig.gain_test({0: 1.0}, {0: 0.5}, None).p is None
    assert sig.gain_test({0: float("nan")}, {0: 0.5}, None).p is None
